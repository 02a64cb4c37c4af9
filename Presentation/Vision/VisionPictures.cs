using AttnCore.Models.Data.Vision;
using AttnCore.Models.Training;
using ScottPlot;
using SkiaSharp;

namespace AttnCore.Presentation.Vision;

/// <summary>One picture of a heat-map grid: the image [C, H, W] bytes, a map [H, W] in [0, 1] over it, and a caption.</summary>
public sealed record HeatTile(byte[] Pixels, int Channels, int Height, int Width, float[] Heat, string Caption);

/// <summary>
/// The pictures of a vision run, written atomically as PNG: the confusion matrix (ScottPlot), the test-accuracy and
/// loss curves per epoch, and grids of images with a heat map laid over them (Grad-CAM, CBAM's spatial attention, an
/// MHSA query's attention), drawn with SkiaSharp.
/// </summary>
public static class VisionPictures
{
    /// <summary>The confusion matrix as a heat map of row-normalised counts (true class down, prediction across) with each count written in its cell.</summary>
    public static void ConfusionMatrix(ConfusionMatrix matrix, IReadOnlyList<string> classNames, string title, string path)
    {
        int n = matrix.Classes;
        if (classNames.Count != n) throw new ArgumentException($"ConfusionMatrix picture: {n} classes but {classNames.Count} names");
        var data = new double[n, n];
        for (int r = 0; r < n; r++)
        {
            long row = 0;
            for (int c = 0; c < n; c++) row += matrix.Counts[r, c];
            for (int c = 0; c < n; c++) data[r, c] = row == 0 ? 0 : (double)matrix.Counts[r, c] / row;
        }
        var plot = new Plot();
        var hm = plot.Add.Heatmap(data);
        hm.Colormap = new ScottPlot.Colormaps.Viridis();
        plot.Add.ColorBar(hm);
        for (int r = 0; r < n; r++)
            for (int c = 0; c < n; c++)
            {
                var text = plot.Add.Text(matrix.Counts[r, c].ToString(System.Globalization.CultureInfo.InvariantCulture), c, n - 1 - r);
                text.LabelFontColor = data[r, c] > 0.5 ? Colors.Black : Colors.White;
                text.LabelAlignment = Alignment.MiddleCenter;
                text.LabelFontSize = 11;
            }
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, n).Select(i => (double)i).ToArray(), classNames.ToArray());
        plot.Axes.Bottom.TickLabelStyle.Rotation = 45;
        plot.Axes.Bottom.TickLabelStyle.Alignment = Alignment.MiddleLeft;
        plot.Axes.Left.SetTicks(Enumerable.Range(0, n).Select(i => (double)(n - 1 - i)).ToArray(), classNames.ToArray());
        plot.XLabel("predicted"); plot.YLabel("true"); plot.Title(title);
        AtomicFile.Write(path, tmp => plot.SavePng(tmp, 180 + 60 * n, 160 + 55 * n));
    }

    /// <summary>Test accuracy and train/test loss against the epoch, one panel each.</summary>
    public static void EpochCurves(IReadOnlyList<(int Epoch, double TrainLoss, double TestLoss, double TestAccuracy)> epochs, string title, string path)
    {
        var multi = new Multiplot();
        multi.AddPlots(2);
        var loss = multi.GetPlot(0); var acc = multi.GetPlot(1);
        double[] x = epochs.Select(e => (double)e.Epoch).ToArray();
        var tr = loss.Add.Scatter(x, epochs.Select(e => e.TrainLoss).ToArray()); tr.LegendText = "train (last steps)";
        var te = loss.Add.Scatter(x, epochs.Select(e => e.TestLoss).ToArray()); te.LegendText = "test";
        loss.XLabel("epoch"); loss.YLabel("loss"); loss.Title(title); loss.ShowLegend(Alignment.UpperRight);   // clear of the falling curves' ends
        acc.Add.Scatter(x, epochs.Select(e => e.TestAccuracy).ToArray());
        acc.XLabel("epoch"); acc.YLabel("test accuracy");
        multi.Layout = new ScottPlot.MultiplotLayouts.Rows();
        AtomicFile.Write(path, tmp => multi.SavePng(tmp, 800, 700));
    }

    /// <summary>
    /// A grid of tiles, each the image (scaled up by <paramref name="scale"/>, nearest neighbour) beside the same image with
    /// its heat map blended over it (jet colours, alpha 0.5), the caption underneath.
    /// </summary>
    public static void HeatGrid(IReadOnlyList<HeatTile> tiles, string title, string path, int scale = 6, int columns = 2)
    {
        if (tiles.Count == 0) throw new ArgumentException("HeatGrid: no tiles");
        int h = tiles[0].Height * scale, w = tiles[0].Width * scale, caption = 22, pad = 8, header = 30;
        int tileW = 2 * w + 3 * pad, tileH = h + caption + pad;
        int rows = (tiles.Count + columns - 1) / columns;
        using var surface = SKSurface.Create(new SKImageInfo(columns * tileW, header + rows * tileH, SKColorType.Rgba8888, SKAlphaType.Premul));
        var canvas = surface.Canvas;
        canvas.Clear(SKColors.White);
        using var font = new SKFont(SKTypeface.Default, 14);
        using var ink = new SKPaint { Color = SKColors.Black, IsAntialias = true };
        canvas.DrawText(title, pad, 20, font, ink);
        for (int t = 0; t < tiles.Count; t++)
        {
            var tile = tiles[t];
            if (tile.Heat.Length != tile.Height * tile.Width || tile.Pixels.Length != tile.Channels * tile.Height * tile.Width)
                throw new ArgumentException($"HeatGrid: tile {t} ('{tile.Caption}') has {tile.Pixels.Length} pixel bytes and {tile.Heat.Length} heat values for a {tile.Channels}x{tile.Height}x{tile.Width} image");
            int ox = (t % columns) * tileW + pad, oy = header + (t / columns) * tileH;
            using var plain = Bitmap(tile, blend: false);
            using var over = Bitmap(tile, blend: true);
            canvas.DrawBitmap(plain, new SKRect(ox, oy, ox + w, oy + h));
            canvas.DrawBitmap(over, new SKRect(ox + w + pad, oy, ox + 2 * w + pad, oy + h));
            canvas.DrawText(tile.Caption, ox, oy + h + 16, font, ink);
        }
        using var image = surface.Snapshot();
        using var png = image.Encode(SKEncodedImageFormat.Png, 100);
        AtomicFile.Write(path, tmp => File.WriteAllBytes(tmp, png.ToArray()));
    }

    private static SKBitmap Bitmap(HeatTile tile, bool blend)
    {
        var bitmap = new SKBitmap(tile.Width, tile.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        int plane = tile.Height * tile.Width;
        for (int y = 0; y < tile.Height; y++)
            for (int x = 0; x < tile.Width; x++)
            {
                int p = y * tile.Width + x;
                double r = tile.Pixels[p], g = tile.Pixels[tile.Channels == 3 ? plane + p : p], b = tile.Pixels[tile.Channels == 3 ? 2 * plane + p : p];
                if (blend)
                {
                    var (hr, hg, hb) = Jet(tile.Heat[p]);
                    r = 0.5 * r + 0.5 * hr; g = 0.5 * g + 0.5 * hg; b = 0.5 * b + 0.5 * hb;
                }
                bitmap.SetPixel(x, y, new SKColor((byte)r, (byte)g, (byte)b));
            }
        return bitmap;
    }

    // The jet colour map (blue - cyan - yellow - red) for v in [0, 1]: the usual look of Grad-CAM overlays.
    private static (double R, double G, double B) Jet(float v)
    {
        double t = Math.Clamp(double.IsFinite(v) ? v : 0, 0, 1) * 4;
        static double C(double x) => 255 * Math.Clamp(x, 0, 1);
        return (C(Math.Min(t - 1.5, -t + 4.5)), C(Math.Min(t - 0.5, -t + 3.5)), C(Math.Min(t + 0.5, -t + 2.5)));
    }
}
