// Gemm (GPU): batched C = A @ B with shared-memory tiles (the classic CUDA programming guide scheme).
//
// Each group of Tile x Tile threads owns one Tile x Tile block of C. For every Tile-wide slice of K, the
// group loads a Tile x Tile tile of A and of B into shared memory (one element per thread, zero outside
// the matrix), waits at a barrier, and each thread accumulates its dot product over the tile from shared
// memory. Transposed operands and batch strides (0 = broadcast) are handled in the loads, so views need no
// copies. FLOPs: 2·M·N·K. Global traffic: (M·K·N/Tile + K·N·M/Tile) reads. Bound: shared-memory bandwidth
// at this tile size; register tiles and double buffering come with the GPU backend issue.
// Reference: the CPU GEMM (Tests/Gpu).
using ILGPU;

namespace AttnCore.Kernels.Gpu;

/// <summary>Sizes, offsets and strides of one batched product.</summary>
public struct GemmArgs
{
#pragma warning disable CS1591
    public int M, N, K, Lda, Ldb, TransA, TransB;
    public long OffsetA, OffsetB, BatchStrideA, BatchStrideB;
#pragma warning restore CS1591
}

/// <summary>Tiled matrix multiply.</summary>
public static class Gemm
{
    /// <summary>Edge of the square thread group and of the shared tiles.</summary>
    public const int Tile = 4;

    /// <summary>Launch with grid (ceil(N/Tile), ceil(M/Tile), batch) and group (Tile, Tile).</summary>
    public static void TiledKernel(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmArgs p)
    {
        var tileA = SharedMemory.Allocate2D<float, Stride2D.DenseX>(new Index2D(Tile, Tile), new Stride2D.DenseX(Tile));
        var tileB = SharedMemory.Allocate2D<float, Stride2D.DenseX>(new Index2D(Tile, Tile), new Stride2D.DenseX(Tile));
        int tx = Group.IdxX, ty = Group.IdxY;
        int col = Grid.IdxX * Tile + tx, row = Grid.IdxY * Tile + ty, batch = Grid.IdxZ;
        long baseA = p.OffsetA + batch * p.BatchStrideA, baseB = p.OffsetB + batch * p.BatchStrideB;
        float acc = 0;
        for (int k0 = 0; k0 < p.K; k0 += Tile)
        {
            int ka = k0 + tx, kb = k0 + ty;
            tileA[ty, tx] = row < p.M && ka < p.K ? a[baseA + (p.TransA != 0 ? (long)ka * p.Lda + row : (long)row * p.Lda + ka)] : 0f;
            tileB[ty, tx] = kb < p.K && col < p.N ? b[baseB + (p.TransB != 0 ? (long)col * p.Ldb + kb : (long)kb * p.Ldb + col)] : 0f;
            Group.Barrier();
            for (int k = 0; k < Tile; k++) acc += tileA[ty, k] * tileB[k, tx];
            Group.Barrier();
        }
        if (row < p.M && col < p.N) c[(long)batch * p.M * p.N + (long)row * p.N + col] = acc;
    }
}
