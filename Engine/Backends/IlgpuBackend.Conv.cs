using AttnCore.Kernels.Cpu;

namespace AttnCore.Backends;

// Convolution, pooling, batch norm and SGD on ILGPU devices.
public sealed partial class IlgpuBackend
{
    /// <inheritdoc/>
    public void Conv2dForward(Storage x, Storage w, Storage? bias, Storage y, in Conv2dShape shape) => throw NotImplemented("Conv2d");
    /// <inheritdoc/>
    public void Conv2dBackward(Storage dy, Storage x, Storage w, Storage? dx, Storage? dw, Storage? dbias, in Conv2dShape shape) => throw NotImplemented("Conv2dBackward");
    /// <inheritdoc/>
    public void Pool2dForward(bool max, Storage x, Storage y, Storage? argmax, in Pool2dShape shape) => throw NotImplemented(max ? "MaxPool2d" : "AvgPool2d");
    /// <inheritdoc/>
    public void Pool2dBackward(bool max, Storage dy, Storage? argmax, Storage dx, in Pool2dShape shape) => throw NotImplemented(max ? "MaxPool2dBackward" : "AvgPool2dBackward");
    /// <inheritdoc/>
    public void BatchNormForward(bool training, Storage x, Storage? gamma, Storage? beta, Storage y, Storage mean, Storage invstd, Storage? runningMean, Storage? runningVar,
        int n, int c, int hw, double momentum, double eps) => throw NotImplemented("BatchNorm2d");
    /// <inheritdoc/>
    public void BatchNormBackward(Storage dy, Storage x, Storage mean, Storage invstd, Storage? gamma, Storage dx, Storage? dgamma, Storage? dbeta, int n, int c, int hw) => throw NotImplemented("BatchNorm2dBackward");

    /// <inheritdoc/>
    public void SgdUpdate(Storage param, Storage grad, Storage? momentumBuffer, long length, SgdHyper hyper) => throw NotImplemented("SgdUpdate");
}
