using System.Globalization;
using System.Text;

namespace AttnCore;

// ToString in PyTorch's style: tensor([[1.0000, 2.0000], ...]) with dtype/device noted when not the default.
public sealed partial class Tensor
{
    private const int SummarizeAbove = 1000;   // torch's threshold
    private const int EdgeItems = 3;

    /// <summary>The values as PyTorch prints them; large tensors are summarised with "...".</summary>
    public override string ToString()
    {
        if (IsDisposed) return $"tensor(<disposed>, shape={AttnCore.Shape.Format(Layout.Shape)})";
        double[] values;
        values = ToArray<double>();
        bool summarize = values.Length > SummarizeAbove;
        bool integral = DType == DType.Int64 || values.All(v => !double.IsFinite(v) || v == Math.Floor(v) && Math.Abs(v) < 1e8);
        bool sci = !integral && values.Where(double.IsFinite).Select(Math.Abs).Where(v => v > 0).DefaultIfEmpty(1)
            .Aggregate((lo: double.MaxValue, hi: 0.0), (a, v) => (Math.Min(a.lo, v), Math.Max(a.hi, v)), a => a.hi / a.lo > 1000 || a.hi >= 1e8 || a.lo < 1e-4);
        string Fmt(double v)
        {
            if (DType == DType.Bool) return v != 0 ? "True" : "False";
            if (double.IsNaN(v)) return "nan";
            if (double.IsPositiveInfinity(v)) return "inf";
            if (double.IsNegativeInfinity(v)) return "-inf";
            if (DType == DType.Int64) return ((long)v).ToString(CultureInfo.InvariantCulture);
            if (integral) return v.ToString("0", CultureInfo.InvariantCulture) + ".";
            return sci ? v.ToString("0.0000e+00", CultureInfo.InvariantCulture) : v.ToString("0.0000", CultureInfo.InvariantCulture);
        }
        var cells = values.Select(Fmt).ToArray();
        int width = cells.Length == 0 ? 0 : cells.Max(s => s.Length);
        var sb = new StringBuilder("tensor(");
        if (Rank == 0) sb.Append(cells[0]);
        else if (Numel == 0) sb.Append("[]");
        else Append(sb, cells, width, 0, 0, "tensor(".Length + 1, summarize);
        var notes = new List<string>();
        if (Numel == 0 && Rank > 1 || Numel == 0 && Rank == 1 && Layout.Shape[0] != 0) notes.Add($"size={AttnCore.Shape.Format(Layout.Shape)}");
        // As PyTorch: int64 and bool values show their type, so the dtype is noted only for an empty tensor.
        if (DType is not (DType.Float32 or DType.Int64 or DType.Bool)) notes.Add($"dtype={DType.Name()}");
        if ((DType is DType.Int64 or DType.Bool) && Numel == 0) notes.Add($"dtype={DType.Name()}");
        if (Device != Device.Cpu) notes.Add($"device='{Device}'");
        foreach (var n in notes) sb.Append(", ").Append(n);
        return sb.Append(')').ToString();
    }

    private void Append(StringBuilder sb, string[] cells, int width, int dim, long offset, int indent, bool summarize)
    {
        int size = Layout.Shape[dim];
        long block = AttnCore.Shape.Numel(Layout.Shape.AsSpan(dim + 1));
        sb.Append('[');
        for (int i = 0; i < size; i++)
        {
            if (summarize && size > 2 * EdgeItems && i == EdgeItems)
            {
                sb.Append(dim == Rank - 1 ? "..., " : "...,\n" + new string(' ', indent + dim) + (Rank - dim > 2 ? "\n" + new string(' ', indent + dim) : ""));
                i = size - EdgeItems - 1;
                continue;
            }
            if (dim == Rank - 1) sb.Append(cells[offset + i].PadLeft(width));
            else Append(sb, cells, width, dim + 1, offset + i * block, indent, summarize);
            if (i < size - 1)
                sb.Append(dim == Rank - 1 ? ", " : "," + new string('\n', Rank - dim - 1) + new string(' ', indent + dim));
        }
        sb.Append(']');
    }
}
