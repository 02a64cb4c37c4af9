"""Coefficients of VectorMath.ExpShifted: the degree-5 polynomial p(f) ~ 2^f on [-1/2, 1/2] that minimises the
largest relative error (Remez exchange on a fine grid), rounded to float32, and its error when evaluated in float32
by Horner's rule with fused multiply-adds. Run: /usr/bin/python3 Tests/Fixtures/make_exp2_minimax.py"""
import numpy as np

GRID = np.linspace(-0.5, 0.5, 200001)
TARGET = 2.0 ** GRID


def remez(degree, iterations=40):
    n = degree + 2
    points = np.sort(-0.5 * np.cos(np.pi * np.arange(n) / (n - 1)))
    for _ in range(iterations):
        a = np.zeros((n, n))
        for i, x in enumerate(points):
            a[i, :degree + 1] = x ** np.arange(degree + 1)
            a[i, degree + 1] = (-1) ** i * 2.0 ** x   # equal relative error of alternating sign
        coefficients = np.linalg.solve(a, 2.0 ** points)[:degree + 1]
        error = (np.polyval(coefficients[::-1], GRID) - TARGET) / TARGET
        runs = np.split(np.arange(len(GRID)), np.flatnonzero(np.diff(np.sign(error)) != 0) + 1)
        extrema = [run[np.argmax(np.abs(error[run]))] for run in runs]
        while len(extrema) > n:
            extrema.pop(0 if abs(error[extrema[0]]) < abs(error[extrema[-1]]) else -1)
        if len(extrema) < n:
            break
        points = GRID[extrema]
    return coefficients, np.max(np.abs(error))


coefficients, error = remez(5)
c32 = [np.float32(c) for c in coefficients]
f = GRID.astype(np.float32)
p = np.full_like(f, c32[-1])
for c in c32[-2::-1]:
    p = (p.astype(np.float64) * f + np.float64(c)).astype(np.float32)   # one rounding per step, as an FMA
exact = 2.0 ** f.astype(np.float64)
print(f"relative error {error:.3g} exact, {np.max(np.abs((p - exact) / exact)):.3g} in float32")
print("highest degree first:", ", ".join(f"{float(c):.9e}f" for c in c32[::-1]))
