namespace AttnCore.Backends;

/// <summary>
/// Walks up to three strided operands of one shape as a sequence of runs along the innermost dim,
/// after merging dims that are contiguous for every operand (a contiguous tensor is one run).
/// This is the one place the CPU backend handles layouts; kernels only ever see runs.
/// </summary>
internal unsafe struct StridedLoop
{
    private const int MaxRank = 16;
    private readonly int _rank;                 // merged rank (>= 1)
    private readonly int _operands;
    private fixed int _shape[MaxRank];
    private fixed long _strides[MaxRank * 3];
    private fixed int _index[MaxRank];
    private fixed long _offsets[3];
    private long _remainingRuns;

    /// <summary>Length of every run.</summary>
    public readonly int RunLength;
    /// <summary>Stride of operand 0, 1, 2 inside a run.</summary>
    public readonly long Inner0, Inner1, Inner2;

    public StridedLoop(int[] shape, long[] s0, long off0, long[]? s1 = null, long off1 = 0, long[]? s2 = null, long off2 = 0)
    {
        if (shape.Length > MaxRank) throw new NotSupportedException($"AttnCore supports tensors of rank up to {MaxRank}, got rank {shape.Length}");
        _operands = s2 is not null ? 3 : s1 is not null ? 2 : 1;
        _offsets[0] = off0; _offsets[1] = off1; _offsets[2] = off2;
        long numel = 1;
        foreach (int d in shape) numel *= d;
        // Keep non-unit dims, merging a dim into the previous kept one when every operand steps contiguously across them.
        int r = 0;
        for (int i = 0; i < shape.Length; i++)
        {
            if (shape[i] == 1) continue;
            if (r > 0 && Mergeable(r - 1, shape[i], s0[i], s1?[i] ?? 0, s2?[i] ?? 0))
            {
                _shape[r - 1] *= shape[i];
                _strides[(r - 1) * 3] = s0[i];
                if (_operands > 1) _strides[(r - 1) * 3 + 1] = s1![i];
                if (_operands > 2) _strides[(r - 1) * 3 + 2] = s2![i];
                continue;
            }
            _shape[r] = shape[i];
            _strides[r * 3] = s0[i];
            _strides[r * 3 + 1] = s1?[i] ?? 0;
            _strides[r * 3 + 2] = s2?[i] ?? 0;
            r++;
        }
        if (r == 0) { _shape[0] = 1; r = 1; }
        _rank = r;
        RunLength = numel == 0 ? 0 : _shape[r - 1];
        Inner0 = _strides[(r - 1) * 3]; Inner1 = _strides[(r - 1) * 3 + 1]; Inner2 = _strides[(r - 1) * 3 + 2];
        _remainingRuns = numel == 0 ? 0 : numel / RunLength;
    }

    private readonly bool Mergeable(int prev, int size, long a, long b, long c) =>
        _strides[prev * 3] == a * size
        && (_operands < 2 || _strides[prev * 3 + 1] == b * size)
        && (_operands < 3 || _strides[prev * 3 + 2] == c * size);

    /// <summary>Positions the loop so that the next <see cref="Next"/> returns run <paramref name="run"/> (of <paramref name="count"/> left to walk).</summary>
    public void Seek(long run, long count)
    {
        long rest = run;
        for (int d = _rank - 2; d >= 0; d--)
        {
            int i = (int)(rest % _shape[d]);
            rest /= _shape[d];
            _index[d] = i;
            _offsets[0] += i * _strides[d * 3]; _offsets[1] += i * _strides[d * 3 + 1]; _offsets[2] += i * _strides[d * 3 + 2];
        }
        _remainingRuns = count;
    }

    /// <summary>Number of runs in total.</summary>
    public readonly long RunCount => _remainingRuns;

    /// <summary>Moves to the next run; gives each operand's storage offset of its first element.</summary>
    public bool Next(out long o0, out long o1, out long o2)
    {
        o0 = _offsets[0]; o1 = _offsets[1]; o2 = _offsets[2];
        if (_remainingRuns <= 0) return false;
        _remainingRuns--;
        // Advance the odometer over the outer dims for the following call.
        for (int d = _rank - 2; d >= 0; d--)
        {
            _offsets[0] += _strides[d * 3]; _offsets[1] += _strides[d * 3 + 1]; _offsets[2] += _strides[d * 3 + 2];
            if (++_index[d] < _shape[d]) return true;
            _offsets[0] -= _strides[d * 3] * _shape[d]; _offsets[1] -= _strides[d * 3 + 1] * _shape[d]; _offsets[2] -= _strides[d * 3 + 2] * _shape[d];
            _index[d] = 0;
        }
        return true;
    }
}
