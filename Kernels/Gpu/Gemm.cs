// Gemm (GPU): batched C[b] = A[b] @ B[b] (float32), two kernels with the same operand conventions.
//
// Operands follow AttnCore's MatrixOperand: matrix b starts at Offset + b*BatchStride (0 broadcasts one
// matrix over the batch), rows are Ld apart, Transposed means the matrix is stored as its transpose; the
// loads absorb all of this, so transposed and broadcast views need no copies. C is contiguous [batch, M, N].
// Both kernels zero-fill the staged tiles outside the matrices and guard the stores, so any M, N, K works
// (K = 0 writes zeros). Grid: (column blocks, row blocks, batch).
//
// TiledKernel (the readable reference; the scheme of the CUDA programming guide's matrix-multiply example):
//   a T x T group owns a T x T block of C, stages a T x T tile of A and of B per T-wide slice of K, and each
//   thread adds T products per slice. Global reads: 2*M*N*K/T elements; shared reads: two per FMA, which
//   bounds it by shared-memory bandwidth (~1/8 of the FMA rate on recent GPUs). Used for small products
//   where the register-tiled kernel would leave most multiprocessors idle.
//
// RegisterTiledKernel (used for everything else): an E x E group (E = 16 on GPUs: 256 threads; 4 on the CPU
// accelerator: 16 threads) owns a BM x BN = 8E x 8E block of C (128 x 128 on GPUs) and walks K in slices of
// BK (8). Per slice it stages BM x BK of A and BK x BN of B in shared memory, both k-major, so at step k a
// thread reads 8 contiguous-stride A values and 8 B values and does 64 FMAs with them:
//
//                      B tile  BK x BN (k-major rows, padded to BN+1)
//                     +--------------------------------------------+
//                  k  | b(k, tx)  b(k, tx+E)  ...  b(k, tx+7E)      |
//                     +--------------------------------------------+
//   A tile BM x BK   C block BM x BN, thread (tx, ty) owns the 8 x 8 micro-tile
//   stored k-major   of rows ty + iE and columns tx + jE (i, j < 8), held in
//   as [k][m]        64 scalar registers (four 4 x 4 accumulator structs):
//   +---+            +--------------------------------------------+
//   | a |  ty        | x . . . x . . . x . . .   (E apart)          |
//   |(ty|            | . . . . . . . . . . . .                      |
//   | ,k|  ty+E      | x . . . x . . . x . . .                      |
//   |)  |  ...       | ...                                          |
//   +---+  ty+7E     +--------------------------------------------+
//
//   Strided (not contiguous) micro-tiles make neighbouring threads read neighbouring shared words (no bank
//   conflicts in the inner loop; A reads are broadcasts within a warp) and store neighbouring words of C
//   (coalesced). The +1 padding of the tile rows spreads the k-fastest staging writes of an untransposed A
//   (and a transposed B) over all banks. Staging reads follow the stored layout so global loads coalesce.
//   The 8 x 8 product is written out as scalars because ILGPU 1.5.3 does not unroll loops and puts indexed
//   local arrays in .local memory (KERNEL-NOTES.md); a test checks that the PTX has no .local depot.
//   Per slice: 16 shared loads for 64 FMAs (vs 2 per FMA above); global reads 2*M*N*K/128 elements.
//   Not done yet: double-buffered staging (prefetching slice k+1 into registers during slice k), vector
//   (ld.shared.v4) loads and tensor cores; see docs/gpu.md.
// FLOPs: 2*M*N*K per matrix. Writes: 4*M*N bytes. Bound: FMA issue and shared-memory latency for large
// products (compute-bound: arithmetic intensity ~32 FLOP per global byte at 128 x 128).
// Reference: the float64 references in Tests/Gpu/IlgpuBackendTests.cs and Tests/Gpu/GemmRowsGpuTests.cs.
using System.Runtime.CompilerServices;
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

/// <summary>A 4 x 4 block of accumulators kept in registers (16 scalar fields, never indexed).</summary>
public struct Acc4x4
{
    /// <summary>Entry [row, col] of the block is V{row}{col}; separate fields, not an array, so they stay in registers.</summary>
    public float V00, V01, V02, V03, V10, V11, V12, V13, V20, V21, V22, V23, V30, V31, V32, V33;

    /// <summary>c + a bᵀ for a column a (4 rows) and a row b (4 columns).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Acc4x4 Fma(Acc4x4 c, float a0, float a1, float a2, float a3, float b0, float b1, float b2, float b3)
    {
        c.V00 += a0 * b0; c.V01 += a0 * b1; c.V02 += a0 * b2; c.V03 += a0 * b3;
        c.V10 += a1 * b0; c.V11 += a1 * b1; c.V12 += a1 * b2; c.V13 += a1 * b3;
        c.V20 += a2 * b0; c.V21 += a2 * b1; c.V22 += a2 * b2; c.V23 += a2 * b3;
        c.V30 += a3 * b0; c.V31 += a3 * b1; c.V32 += a3 * b2; c.V33 += a3 * b3;
        return c;
    }

    /// <summary>Writes the block to rows row + i*step and columns col + j*step of a row-major M x N matrix at cBase (inside entries only).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public readonly void Store(ArrayView<float> c, long cBase, int m, int n, int row, int col, int step)
    {
        StoreRow(c, cBase, m, n, row, col, step, V00, V01, V02, V03);
        StoreRow(c, cBase, m, n, row + step, col, step, V10, V11, V12, V13);
        StoreRow(c, cBase, m, n, row + 2 * step, col, step, V20, V21, V22, V23);
        StoreRow(c, cBase, m, n, row + 3 * step, col, step, V30, V31, V32, V33);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void StoreRow(ArrayView<float> c, long cBase, int m, int n, int row, int col, int step, float v0, float v1, float v2, float v3)
    {
        if (row >= m) return;
        long o = cBase + (long)row * n;
        if (col < n) c[o + col] = v0;
        if (col + step < n) c[o + col + step] = v1;
        if (col + 2 * step < n) c[o + col + 2 * step] = v2;
        if (col + 3 * step < n) c[o + col + 3 * step] = v3;
    }
}

/// <summary>Tiled matrix multiplies (see the file header).</summary>
public static class Gemm
{
    /// <summary>Rows (and columns) of C per thread in <see cref="RegisterTiledKernel{TEdge, TDepth}"/>.</summary>
    public const int MicroTile = 8;

    /// <summary>
    /// C[b] = A[b] @ B[b], the shared-memory reference kernel. Launch with grid (ceil(N/T), ceil(M/T), batch) and
    /// group (T, T) where T = <typeparamref name="TTile"/>.Value.
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

    /// <summary>
    /// C[b] = A[b] @ B[b] with 8 x 8 register micro-tiles. E = <typeparamref name="TEdge"/>.Value, BK =
    /// <typeparamref name="TDepth"/>.Value. Launch with grid (ceil(N/8E), ceil(M/8E), batch) and group (E, E).
    /// </summary>
    [GpuTypeArguments(typeof(Size16), typeof(Size8))]
    public static void RegisterTiledKernel<TEdge, TDepth>(ArrayView<float> a, ArrayView<float> b, ArrayView<float> c, GemmArgs p)
        where TEdge : struct, IKernelSize
        where TDepth : struct, IKernelSize
    {
        TEdge edge = default;
        TDepth depth = default;
        int e = edge.Value, bk = depth.Value;
        int block = MicroTile * e, pitch = block + 1, threads = e * e;
        // [k][m] and [k][n]: k-major so step k of the inner loop reads one padded row of each.
        var tileA = SharedMemory.Allocate<float>((MicroTile * edge.Value + 1) * depth.Value);
        var tileB = SharedMemory.Allocate<float>((MicroTile * edge.Value + 1) * depth.Value);
        int tx = Group.IdxX, ty = Group.IdxY, tid = ty * e + tx;
        int row0 = Grid.IdxY * block, col0 = Grid.IdxX * block, batch = Grid.IdxZ;
        long baseA = p.OffsetA + batch * p.BatchStrideA, baseB = p.OffsetB + batch * p.BatchStrideB;
        bool transA = p.TransA != 0, transB = p.TransB != 0;
        Acc4x4 c00 = default, c01 = default, c10 = default, c11 = default; // rows i<4 / i>=4 x columns j<4 / j>=4

        for (int k0 = 0; k0 < p.K; k0 += bk)
        {
            // Consecutive threads take consecutive stored elements (coalesced global reads).
            for (int s = tid; s < block * bk; s += threads)
            {
                int r = transA ? s % block : s / bk, kk = transA ? s / block : s % bk;
                int gr = row0 + r, gk = k0 + kk;
                tileA[kk * pitch + r] = gr < p.M && gk < p.K
                    ? a[baseA + (transA ? (long)gk * p.Lda + gr : (long)gr * p.Lda + gk)] : 0f;
            }
            for (int s = tid; s < block * bk; s += threads)
            {
                int cc = transB ? s / bk : s % block, kk = transB ? s % bk : s / block;
                int gc = col0 + cc, gk = k0 + kk;
                tileB[kk * pitch + cc] = gc < p.N && gk < p.K
                    ? b[baseB + (transB ? (long)gc * p.Ldb + gk : (long)gk * p.Ldb + gc)] : 0f;
            }
            Group.Barrier();
            for (int k = 0; k < bk; k++)
            {
                int oa = k * pitch + ty, ob = k * pitch + tx;
                float a0 = tileA[oa], a1 = tileA[oa + e], a2 = tileA[oa + 2 * e], a3 = tileA[oa + 3 * e];
                float a4 = tileA[oa + 4 * e], a5 = tileA[oa + 5 * e], a6 = tileA[oa + 6 * e], a7 = tileA[oa + 7 * e];
                float b0 = tileB[ob], b1 = tileB[ob + e], b2 = tileB[ob + 2 * e], b3 = tileB[ob + 3 * e];
                float b4 = tileB[ob + 4 * e], b5 = tileB[ob + 5 * e], b6 = tileB[ob + 6 * e], b7 = tileB[ob + 7 * e];
                c00 = Acc4x4.Fma(c00, a0, a1, a2, a3, b0, b1, b2, b3);
                c01 = Acc4x4.Fma(c01, a0, a1, a2, a3, b4, b5, b6, b7);
                c10 = Acc4x4.Fma(c10, a4, a5, a6, a7, b0, b1, b2, b3);
                c11 = Acc4x4.Fma(c11, a4, a5, a6, a7, b4, b5, b6, b7);
            }
            Group.Barrier(); // the tiles are overwritten by the next slice
        }

        long cBase = (long)batch * p.M * p.N;
        int row = row0 + ty, col = col0 + tx;
        c00.Store(c, cBase, p.M, p.N, row, col, e);
        c01.Store(c, cBase, p.M, p.N, row, col + 4 * e, e);
        c10.Store(c, cBase, p.M, p.N, row + 4 * e, col, e);
        c11.Store(c, cBase, p.M, p.N, row + 4 * e, col + 4 * e, e);
    }
}
