// RowTeam (GPU): who works on one row of a row kernel (softmax, layer norm, cross-entropy), as a type argument.
//
// A row kernel is written once against IRowTeam and compiled twice:
//   WarpTeam   one warp per row: lanes stride the row WarpSize apart and combine their partials with a
//              shuffle butterfly (Warp.ShuffleXor, log2(WarpSize) steps, no shared memory, no barrier);
//              a group holds Group.DimX / WarpSize rows. Best for rows up to ~1k elements, where a whole
//              group per row would idle most of its threads and pay log2(group) barriers per reduction.
//   GroupTeam  one group per row: threads stride the row Group.DimX apart and combine through the
//              shared-memory tree of Reduce.GroupAllReduce. The only choice on devices without warp
//              shuffles (OpenCL without sub-groups, e.g. PoCL: ILGPU reports WarpSize 0 there), and the
//              faster one for long rows (cross-entropy over large vocabularies).
// The butterfly leaves the same value in every lane: lane i computes v_i + v_(i xor o) and its partner
// v_(i xor o) + v_i, which IEEE addition makes bit-identical (Max/Min as well, NaN kept as in Reduce.Combine).
// ILGPU specialises generic kernels per type argument, so the GroupTeam build contains no shuffle
// instruction and compiles where sub-groups are missing. The host picks the team (IlgpuBackend.RowTeam).
// Reference: Tests/Gpu/GemmRowsGpuTests.cs runs every row kernel with both teams.
using ILGPU;

namespace AttnCore.Kernels.Gpu;

/// <summary>The threads that share one row of a row kernel, and how they combine partial results.</summary>
public interface IRowTeam
{
    /// <summary>The row of the calling thread (the warp team's last group may reach past the last row).</summary>
    int Row { get; }
    /// <summary>The thread's index within its team.</summary>
    int Lane { get; }
    /// <summary>Threads per team (the stride over a row).</summary>
    int Width { get; }
    /// <summary>Combines one value per team thread under a Reduce op code; every thread of the team gets the result.</summary>
    float AllReduce(ArrayView<float> scratch, float value, int op);
}

/// <summary>
/// The row a team walks. No early return: a team past the last row gets row 0 with no elements, so it still reaches
/// every barrier with the rest of its group (PoCL 3.1 corrupted the host heap when threads left a barrier-carrying
/// kernel early). A plain struct returned by value: the O2 context inlines <see cref="Of"/>, so no pointer reaches
/// the OpenCL C.
/// </summary>
public struct TeamRow
{
    /// <summary>The row, or 0 for a team past the last row.</summary>
    public int Index;
    /// <summary>Elements to walk: the row length, or 0 for a team past the last row.</summary>
    public int Length;
    /// <summary>1 when the team owns a real row; per-row results are written only then.</summary>
    public int Live;

    /// <summary>True when the team owns a real row.</summary>
    public readonly bool Active => Live != 0;

    /// <summary>The row <paramref name="row"/> of <paramref name="rows"/>, each <paramref name="length"/> long.</summary>
    public static TeamRow Of(int row, int rows, int length) => row < rows
        ? new TeamRow { Index = row, Length = length, Live = 1 }
        : new TeamRow { Index = 0, Length = 0, Live = 0 };
}

/// <summary>One warp per row (shuffles; CUDA and the CPU accelerator).</summary>
public struct WarpTeam : IRowTeam
{
    /// <inheritdoc/>
    public readonly int Row => Grid.IdxX * (Group.DimX / Warp.WarpSize) + Warp.WarpIdx;
    /// <inheritdoc/>
    public readonly int Lane => Warp.LaneIdx;
    /// <inheritdoc/>
    public readonly int Width => Warp.WarpSize;

    /// <inheritdoc/>
    public readonly float AllReduce(ArrayView<float> scratch, float value, int op)
    {
        for (int offset = Warp.WarpSize / 2; offset > 0; offset /= 2)
            value = Reduce.Combine(op, value, Warp.ShuffleXor(value, offset));
        return value;
    }
}

/// <summary>One group per row (shared memory and barriers; every device).</summary>
public struct GroupTeam : IRowTeam
{
    /// <inheritdoc/>
    public readonly int Row => Grid.IdxX;
    /// <inheritdoc/>
    public readonly int Lane => Group.IdxX;
    /// <inheritdoc/>
    public readonly int Width => Group.DimX;

    /// <inheritdoc/>
    public readonly float AllReduce(ArrayView<float> scratch, float value, int op) => Reduce.GroupAllReduce(scratch, value, op);
}
