/* The OSU-style reference for `attncore bench allreduce`: the same in-place float32 MPI_SUM all-reduce of the same
   message, called in a plain C loop, timed the same way (warm-up, barrier, mean time per call averaged over ranks; and
   each call's time averaged over ranks, for the fastest, median and slowest call).
   Build: mpicc -O2 -o allreduce_loop allreduce_loop.c
   Run:   mpirun -np 2 ./allreduce_loop BYTES ITERATIONS WARMUP */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long bytes = argc > 1 ? atol(argv[1]) : 1 << 20;
    int iterations = argc > 2 ? atoi(argv[2]) : 100, warmup = argc > 3 ? atoi(argv[3]) : 10;
    int n = (int)(bytes / sizeof(float));
    float *data = malloc((size_t)n * sizeof(float));
    double *per_call = malloc((size_t)iterations * sizeof(double));
    for (int i = 0; i < n; i++) data[i] = 1.0f;
    for (int i = 0; i < warmup; i++) MPI_Allreduce(MPI_IN_PLACE, data, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime(), last = start;
    for (int i = 0; i < iterations; i++)
    {
        MPI_Allreduce(MPI_IN_PLACE, data, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        double now = MPI_Wtime();
        per_call[i] = now - last;
        last = now;
    }
    double mine = (MPI_Wtime() - start) / iterations, sum = 0;
    MPI_Allreduce(&mine, &sum, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, per_call, iterations, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    qsort(per_call, (size_t)iterations, sizeof(double), compare_doubles);
    double median = iterations % 2 ? per_call[iterations / 2] : (per_call[iterations / 2 - 1] + per_call[iterations / 2]) / 2;
    double seconds = sum / size, algbw = (double)n * sizeof(float) / seconds / 1e9;
    if (rank == 0)
        printf("{\"op\":\"allreduce-c\",\"bytes\":%ld,\"ranks\":%d,\"iterations\":%d,\"latency_us\":%.3f,\"latency_us_min\":%.3f,\"latency_us_median\":%.3f,\"latency_us_max\":%.3f,\"algbw_gbs\":%.4f,\"busbw_gbs\":%.4f}\n",
               (long)n * (long)sizeof(float), size, iterations, seconds * 1e6, per_call[0] / size * 1e6, median / size * 1e6,
               per_call[iterations - 1] / size * 1e6, algbw, algbw * 2.0 * (size - 1) / size);
    free(per_call);
    free(data);
    MPI_Finalize();
    return 0;
}
