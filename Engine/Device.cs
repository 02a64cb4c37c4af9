using AttnCore.Backends;

namespace AttnCore;

/// <summary>The kinds of device AttnCore computes on.</summary>
public enum DeviceKind
{
    /// <summary>The host CPU, running the hand-written SIMD kernels.</summary>
    Cpu,
    /// <summary>ILGPU's CPU accelerator: the GPU kernels run on the host (for tests without a GPU).</summary>
    IlgpuCpu,
    /// <summary>An NVIDIA GPU through ILGPU's CUDA backend.</summary>
    Cuda,
    /// <summary>An OpenCL device through ILGPU's OpenCL backend.</summary>
    OpenCL,
}

/// <summary>
/// A place where tensors live and ops run. Devices are singletons per (kind, index): compare them
/// with ==. Each owns one backend, created on first use and kept for the process.
/// </summary>
public sealed class Device : IEquatable<Device>
{
    private static readonly object Gate = new();
    private static readonly Dictionary<(DeviceKind, int), Device> Known = [];
    private IBackend? _backend;
    private readonly Func<Device, IBackend> _factory;

    private Device(DeviceKind kind, int index, Func<Device, IBackend> factory)
    {
        Kind = kind; Index = index; _factory = factory;
    }

    /// <summary>What kind of device this is.</summary>
    public DeviceKind Kind { get; }
    /// <summary>Ordinal among devices of the same kind.</summary>
    public int Index { get; }

    /// <summary>The host CPU with AttnCore's SIMD kernels.</summary>
    public static Device Cpu { get; } = Get(DeviceKind.Cpu, 0, d => new CpuBackend(d));

    /// <summary>ILGPU's CPU accelerator: runs the GPU kernels on the host, for tests.</summary>
    public static Device IlgpuCpu => Get(DeviceKind.IlgpuCpu, 0, d => new IlgpuBackend(d));

    /// <summary>The <paramref name="index"/>-th CUDA GPU (through ILGPU). Throws when there is none.</summary>
    public static Device Cuda(int index = 0)
    {
        if (index < 0 || index >= IlgpuRuntime.CudaCount)
            throw new ArgumentException($"Device.Cuda: there is no CUDA device {index} ({IlgpuRuntime.CudaCount} found)");
        return Get(DeviceKind.Cuda, index, d => new IlgpuBackend(d));
    }

    /// <summary>The <paramref name="index"/>-th OpenCL device (through ILGPU; PoCL counts). Throws when there is none.</summary>
    public static Device OpenCL(int index = 0)
    {
        if (index < 0 || index >= IlgpuRuntime.OpenCLCount)
            throw new ArgumentException($"Device.OpenCL: there is no OpenCL device {index} ({IlgpuRuntime.OpenCLCount} found; PoCL: apt-get install pocl-opencl-icd ocl-icd-opencl-dev)");
        return Get(DeviceKind.OpenCL, index, d => new IlgpuBackend(d));
    }

    [ThreadStatic] private static Device? _default;

    /// <summary>
    /// Where factory functions (FromArray, Zeros, Randn, ...) put a tensor when no device is given: the CPU unless
    /// set (per thread, like torch.set_default_device). Ops on existing tensors follow their inputs, not this.
    /// </summary>
    public static Device Default
    {
        get => _default ?? Cpu;
        set => _default = value;
    }

    /// <summary>Makes <paramref name="device"/> the <see cref="Default"/> of this thread until the returned scope is disposed.</summary>
    public static IDisposable UseDefault(Device device)
    {
        var previous = _default;
        _default = device;
        return new DefaultScope(previous);
    }

    private sealed class DefaultScope(Device? previous) : IDisposable
    {
        private bool _done;
        public void Dispose()
        {
            if (_done) return;
            _done = true;
            _default = previous;
        }
    }

    /// <summary>Number of CUDA devices ILGPU finds.</summary>
    public static int CudaCount => IlgpuRuntime.CudaCount;

    /// <summary>Number of OpenCL devices ILGPU finds.</summary>
    public static int OpenCLCount => IlgpuRuntime.OpenCLCount;

    /// <summary>
    /// The device to train on: the first CUDA GPU, else the first OpenCL device that is a GPU, else the SIMD CPU.
    /// OpenCL CPU devices (PoCL) and ILGPU's CPU accelerator are never chosen: they check kernels, the SIMD
    /// backend is the fast way to use a CPU.
    /// </summary>
    public static Device Best()
    {
        if (CudaCount > 0) return Cuda(0);
        int gpu = IlgpuRuntime.FirstOpenCLGpu;
        return gpu >= 0 ? OpenCL(gpu) : Cpu;
    }

    /// <summary>Waits for every op queued on this device (GPU kernels launch asynchronously); a no-op on the CPU.</summary>
    public void Synchronize() { if (HasBackend) Backend.Synchronize(); }

    /// <summary>The backend that runs ops on this device (created on first use).</summary>
    public IBackend Backend
    {
        get
        {
            if (_backend is not null) return _backend;
            lock (Gate) return _backend ??= _factory(this);
        }
    }

    /// <summary>True once the backend has been created (so disposal of everything does not create one).</summary>
    internal bool HasBackend => _backend is not null;

    internal static Device Get(DeviceKind kind, int index, Func<Device, IBackend> factory)
    {
        lock (Gate)
        {
            if (!Known.TryGetValue((kind, index), out var d)) Known[(kind, index)] = d = new Device(kind, index, factory);
            return d;
        }
    }

    /// <summary>Parses the CLI spelling: cpu, ilgpu-cpu, cuda[:i], opencl[:i], best.</summary>
    public static Device Parse(string name)
    {
        string n = name.Trim().ToLowerInvariant();
        int colon = n.IndexOf(':');
        string kind = colon < 0 ? n : n[..colon];
        int index = 0;
        if (colon >= 0 && !int.TryParse(n[(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out index))
            throw new ArgumentException($"Device.Parse: '{name}' has no valid device index after ':'");
        return kind switch
        {
            "cpu" => Cpu,
            "ilgpu-cpu" or "ilgpucpu" => IlgpuCpu,
            "cuda" => Cuda(index),
            "opencl" => OpenCL(index),
            "best" => Best(),
            _ => throw new ArgumentException($"Device.Parse: unknown device '{name}' (expected cpu, ilgpu-cpu, cuda[:i], opencl[:i] or best)"),
        };
    }

    /// <summary>Name as PyTorch would print it: cpu, ilgpu-cpu, cuda:0, opencl:0.</summary>
    public override string ToString() => Kind switch
    {
        DeviceKind.Cpu => "cpu",
        DeviceKind.IlgpuCpu => "ilgpu-cpu",
        DeviceKind.Cuda => $"cuda:{Index}",
        DeviceKind.OpenCL => $"opencl:{Index}",
        _ => Kind.ToString(),
    };

    /// <inheritdoc/>
    public bool Equals(Device? other) => ReferenceEquals(this, other);
    /// <inheritdoc/>
    public override bool Equals(object? obj) => ReferenceEquals(this, obj);
    /// <inheritdoc/>
    public override int GetHashCode() => HashCode.Combine(Kind, Index);
}
