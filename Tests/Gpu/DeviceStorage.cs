using AttnCore.Backends;

namespace AttnCore.Tests.Gpu;

/// <summary>Raw storages for the backend-level Gpu tests: host arrays up to a backend and back.</summary>
internal static class DeviceStorage
{
    /// <summary>A float32 storage holding <paramref name="data"/> (at least one element, so empty inputs still get a buffer).</summary>
    public static Storage Upload(IBackend backend, float[] data)
    {
        var s = backend.Allocate(DType.Float32, Math.Max(1, data.Length));
        if (data.Length > 0) backend.Upload<float>(data, s);
        return s;
    }

    /// <summary>The first <paramref name="n"/> floats of <paramref name="s"/>.</summary>
    public static float[] Download(IBackend backend, Storage s, long n)
    {
        var r = new float[n];
        backend.Download<float>(s, 0, r);
        return r;
    }
}
