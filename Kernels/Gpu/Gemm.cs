// Gemm (GPU): batched C[b] = A[b] @ B[b] (float32) with shared-memory tiles, the scheme of the CUDA
// programming guide's matrix-multiply example.
//
// Algorithm: a group of T x T threads owns one T x T block of C (grid = (ceil(N/T), ceil(M/T), batch)).
// For each T-wide slice of K the group stages a T x T tile of A and one of B in shared memory (each thread
// loads one element of each, zero outside the matrix, so edges need no special case), waits at a barrier,
// and every thread adds the T products of its row of the A tile and column of the B tile; a second barrier
// keeps the tiles alive until all threads are done with them. T is a compile-time type argument (shared
// memory must have a constant size): 4 on the CPU accelerator (16 threads per group), 16 on GPUs.
// Operands follow AttnCore's MatrixOperand: matrix b starts at Offset + b*BatchStride (0 broadcasts one
// matrix over the batch), rows are Ld apart, Transposed means the matrix is stored as its transpose; the
// loads absorb all of this, so transposed and broadcast views need no copies. C is contiguous [batch, M, N].
// FLOPs: 2*M*N*K per matrix. Global reads: M*N*K/T of A plus M*N*K/T of B (each element is reused T
// times from shared memory); writes: 4*M*N bytes. Bound: shared-memory bandwidth at these tile sizes (one
// FMA per two shared loads); register tiles and double buffering come with the GPU backend issue.
// Reference: the float64 reference in Tests/Gpu/IlgpuBackendTests.cs.
using ILGPU;

namespace AttnCore.Kernels.Gpu;

/// <summary>Sizes, offsets and strides of one batched product (see the file header for the conventions).</summary>
public struct GemmArgs
{
    /// <summary>C is M x N; the inner dimension is K.</summary>
    public int M, N, K;
    /// <summary>Distance between stored rows of A and of B.</summary>
    public int Lda, Ldb;
    /// <summary>1 when A (or B) is stored transposed.</summary>
    public int TransA, TransB;
    /// <summary>Element index of A[0][0, 0] and B[0][0, 0].</summary>
    public long OffsetA, OffsetB;
    /// <summary>Distance between consecutive matrices of the batch (0 = one matrix for every batch entry).</summary>
    public long BatchStrideA, BatchStrideB;
}

/// <summary>Tiled matrix multiply.</summary>
public static class Gemm
{
    /// <summary>
    /// C[b] = A[b] @ B[b]. Launch with grid (ceil(N/T), ceil(M/T), batch) and group (T, T) where
    /// T = <typeparamref name="TTile"/>.Value.
    /// </summary>
    [GpuTypeArguments(typeof(Size16))]
    public static void TiledKernel<TTile>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmArgs p)
        where TTile : struct, IKernelSize
    {
        TTile tileSize = default;
        int t = tileSize.Value;
        var tileA = SharedMemory.Allocate<float>(tileSize.Value * tileSize.Value); // [ty, k] of the A tile, row-major
        var tileB = SharedMemory.Allocate<float>(tileSize.Value * tileSize.Value); // [k, tx] of the B tile, row-major
        int tx = Group.IdxX, ty = Group.IdxY;
        int col = Grid.IdxX * t + tx, row = Grid.IdxY * t + ty, batch = Grid.IdxZ;
        long baseA = p.OffsetA + batch * p.BatchStrideA, baseB = p.OffsetB + batch * p.BatchStrideB;
        float acc = 0;
        for (int k0 = 0; k0 < p.K; k0 += t)
        {
            int ka = k0 + tx, kb = k0 + ty; // this thread loads A[row, ka] and B[kb, col]
            tileA[ty * t + tx] = row < p.M && ka < p.K ? a[baseA + (p.TransA != 0 ? (long)ka * p.Lda + row : (long)row * p.Lda + ka)] : 0f;
            tileB[ty * t + tx] = kb < p.K && col < p.N ? b[baseB + (p.TransB != 0 ? (long)col * p.Ldb + kb : (long)kb * p.Ldb + col)] : 0f;
            Group.Barrier();
            for (int k = 0; k < t; k++) acc += tileA[ty * t + k] * tileB[k * t + tx];
            Group.Barrier();
        }
        if (row < p.M && col < p.N) c[(long)batch * p.M * p.N + (long)row * p.N + col] = acc;
    }
}
