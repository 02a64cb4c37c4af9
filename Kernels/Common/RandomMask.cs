// RandomMask: dropout keep-masks from a counter-based hash, so a mask is a pure function of (seed, element index)
// and every backend (the CPU loop in Engine, the ILGPU kernel in Kernels/Gpu/Random.cs) draws the same one.
//
// Algorithm: u_i = the top 24 bits of SplitMix64(seed + (i + 1) · φ64) / 2^24 (φ64 = 2^64 / golden ratio, SplitMix64's
// own increment), keep element i when u_i >= p, and write 1/(1-p) for a kept element, 0 otherwise. SplitMix64's
// finaliser is a bijection with full avalanche, so neighbouring counters give independent-looking bits; 24 bits
// resolve p to 6e-8, finer than float32 rounding of the 1/(1-p) scale it multiplies.
namespace AttnCore.Kernels;

/// <summary>Counter-based random masks shared by the CPU and ILGPU backends.</summary>
public static class RandomMask
{
    /// <summary>1/(1-p) when element <paramref name="i"/> of the mask drawn from <paramref name="seed"/> is kept, else 0.</summary>
    public static float KeepScale(ulong seed, long i, float p, float scale)
    {
        ulong z = seed + (ulong)(i + 1) * 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        z ^= z >> 31;
        float u = (z >> 40) * (1f / 16777216f);
        return u >= p ? scale : 0f;
    }
}
