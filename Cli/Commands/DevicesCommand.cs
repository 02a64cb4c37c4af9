using System.CommandLine;
using System.Runtime.Intrinsics;

namespace AttnCore.Cli.Commands;

/// <summary><c>attncore devices</c>: what this machine offers.</summary>
public static class DevicesCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create(CliIO io)
    {
        var json = new Option<bool>("--json") { Description = "print the device list as JSON on the last line" };
        var cmd = new Command("devices", "List the devices AttnCore can compute on, and why any was skipped") { json };
        cmd.SetAction(p =>
        {
            var rows = new List<Dictionary<string, object>>();
            string simd = Vector512.IsHardwareAccelerated ? "Vector512 (AVX-512)" : Vector256.IsHardwareAccelerated ? "Vector256 (AVX2)" : "scalar";
            rows.Add(new() { ["device"] = "cpu", ["name"] = "host CPU, hand-written SIMD kernels", ["cores"] = Environment.ProcessorCount, ["simd"] = simd, ["status"] = Device.Best() == Device.Cpu ? "available (best: `--device best` picks it)" : "available" });
            try
            {
                var backend = (AttnCore.Backends.IlgpuBackend)Device.IlgpuCpu.Backend;
                rows.Add(new() { ["device"] = "ilgpu-cpu", ["name"] = backend.AcceleratorName, ["warp_size"] = backend.WarpSize, ["max_group_size"] = backend.MaxGroupSize, ["status"] = "available (an emulator: for checking GPU kernels, not for speed)" });
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                rows.Add(new() { ["device"] = "ilgpu-cpu", ["status"] = "skipped: " + e.Message });
            }
            void Ilgpu(string kind, int count, Func<int, Device> get, string none)
            {
                if (count == 0) { rows.Add(new() { ["device"] = kind, ["status"] = "skipped: " + none }); return; }
                for (int i = 0; i < count; i++)
                {
                    try
                    {
                        var backend = (AttnCore.Backends.IlgpuBackend)get(i).Backend;
                        rows.Add(new() { ["device"] = $"{kind}:{i}", ["name"] = backend.AcceleratorName, ["memory_gib"] = Math.Round(backend.MemoryBytes / (double)(1L << 30), 1),
                            ["warp_size"] = backend.WarpSize, ["max_group_size"] = backend.MaxGroupSize, ["capability"] = backend.Capability,
                            ["status"] = get(i) == Device.Best() ? "available (best: `--device best` picks it)" : "available" });
                    }
                    catch (Exception e) when (e is not OutOfMemoryException)
                    {
                        rows.Add(new() { ["device"] = $"{kind}:{i}", ["status"] = "skipped: " + e.Message });
                    }
                }
            }
            Ilgpu("cuda", Device.CudaCount, i => Device.Cuda(i), "no CUDA driver or GPU found");
            Ilgpu("opencl", Device.OpenCLCount, i => Device.OpenCL(i), "no OpenCL platform found (for PoCL: apt-get install pocl-opencl-icd ocl-icd-opencl-dev)");
            foreach (var r in rows)
                io.Out.WriteLine($"{r["device"],-10} {string.Join("  ", r.Where(kv => kv.Key != "device").Select(kv => $"{kv.Key}: {kv.Value}"))}");
            if (p.GetValue(json)) io.Json(new { devices = rows });
            return 0;
        });
        return cmd;
    }
}
