using AttnCore.Models.Data.Vision;
using NUnit.Framework;

namespace AttnCore.Tests.Models.Vision;

/// <summary>
/// The IDX reader, the in-memory image set, the per-image crop/flip/normalise kernel against hand-computed values,
/// and the background loader's determinism (same seed, same batches, whatever the timing or resume point).
/// </summary>
[TestFixture, Category("Models")]
public class VisionDataTests
{
    string _dir = "";

    [SetUp]
    public void MakeFolder() => Directory.CreateDirectory(_dir = Path.Combine(Path.GetTempPath(), "attncore-vision-data-" + Guid.NewGuid().ToString("N")));

    [TearDown]
    public void RemoveFolder() => Directory.Delete(_dir, true);

    static readonly string[] Three = ["a", "b", "c"];

    [TestCase(false)]
    [TestCase(true)]
    public void Idx_reads_raw_and_gzip_files_into_an_image_set(bool gzip)
    {
        var pixels = Enumerable.Range(0, 4 * 2 * 3).Select(i => (byte)(i * 7)).ToArray();
        string images = Path.Combine(_dir, "img"), labels = Path.Combine(_dir, "lab");
        VisionTestData.WriteIdx(images, [4, 2, 3], pixels, gzip);
        VisionTestData.WriteIdx(labels, [4], [2, 0, 1, 2], gzip);
        var set = Idx.Load(images, labels, Three);
        Assert.That((set.Count, set.Channels, set.Height, set.Width), Is.EqualTo((4, 1, 2, 3)));
        Assert.That(set.Labels, Is.EqualTo(new[] { 2, 0, 1, 2 }));
        Assert.That(set.Image(2).ToArray(), Is.EqualTo(pixels.Skip(12).Take(6).ToArray()));
        Assert.That(() => set.Image(4), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("image 4 of 4"));
    }

    [Test]
    public void Idx_errors_name_the_file_and_what_is_wrong()
    {
        string images = Path.Combine(_dir, "img"), labels = Path.Combine(_dir, "lab");
        VisionTestData.WriteIdx(labels, [3], [0, 1, 2], gzip: false);

        // Truncated: the header promises 3 images of 2x2, the file holds 10 bytes of them.
        VisionTestData.WriteIdx(images, [3, 2, 2], new byte[10], gzip: true);
        Assert.That(() => Idx.Load(images, labels, Three), Throws.InstanceOf<InvalidDataException>().With.Message.Contains(images).And.Message.Contains("truncated").And.Message.Contains("[3,2,2]"));

        // A gzip stream cut in the middle.
        VisionTestData.WriteIdx(images, [3, 2, 2], new byte[12], gzip: true);
        var gz = File.ReadAllBytes(images);
        File.WriteAllBytes(images, gz[..(gz.Length / 2)]);
        Assert.That(() => Idx.Read(images), Throws.InstanceOf<InvalidDataException>().With.Message.Contains(images));

        // Not unsigned bytes.
        VisionTestData.WriteIdx(images, [3, 2, 2], new byte[12], gzip: false);
        var raw = File.ReadAllBytes(images); raw[2] = 0x0D; File.WriteAllBytes(images, raw);
        Assert.That(() => Idx.Read(images), Throws.InstanceOf<InvalidDataException>().With.Message.Contains(images).And.Message.Contains("0x0D"));

        // Counts that disagree.
        VisionTestData.WriteIdx(images, [2, 2, 2], new byte[8], gzip: false);
        Assert.That(() => Idx.Load(images, labels, Three), Throws.InstanceOf<InvalidDataException>()
            .With.Message.Contains("2 images").And.Message.Contains("3 labels").And.Message.Contains(labels));

        // A label outside the classes.
        VisionTestData.WriteIdx(images, [3, 2, 2], new byte[12], gzip: false);
        VisionTestData.WriteIdx(labels, [3], [0, 7, 2], gzip: false);
        Assert.That(() => Idx.Load(images, labels, Three), Throws.InstanceOf<InvalidDataException>().With.Message.Contains("label 7 at index 1").And.Message.Contains(labels));

        // A file shorter than the magic number, and a missing one.
        File.WriteAllBytes(images, [0, 0]);
        Assert.That(() => Idx.Read(images), Throws.InstanceOf<InvalidDataException>().With.Message.Contains(images));
        Assert.That(() => Idx.LoadFolder(_dir), Throws.InstanceOf<FileNotFoundException>().With.Message.Contains("train-images-idx3-ubyte"));
    }

    [Test]
    public void An_image_set_refuses_pixels_and_labels_that_disagree()
    {
        Assert.That(() => new ImageSet(new byte[10], [0, 1], 1, 2, 2, Three, "x"), Throws.ArgumentException.With.Message.Contains("2 labels").And.Message.Contains("10 pixel bytes"));
        Assert.That(() => new ImageSet(new byte[8], [0, 3], 1, 2, 2, Three, "x"), Throws.ArgumentException.With.Message.Contains("label 3 of image 1"));
    }

    [Test]
    public void A_sample_draws_distinct_images_in_file_order_the_same_for_a_seed_and_every_class_of_a_sorted_set()
    {
        // 300 one-pixel images sorted by class (100 of each), as an image folder lists them; pixel i holds i % 256 so that
        // each drawn image can be traced back to its index.
        var labels = Enumerable.Range(0, 300).Select(i => i / 100).ToArray();
        var set = new ImageSet(Enumerable.Range(0, 300).Select(i => (byte)(i % 256)).ToArray(), labels, 1, 1, 1, Three, "sorted");
        var a = set.Sample(30, 7);
        var b = set.Sample(30, 7);
        Assert.That(a.Count, Is.EqualTo(30));
        Assert.That(b.Pixels, Is.EqualTo(a.Pixels));
        Assert.That(b.Labels, Is.EqualTo(a.Labels));
        Assert.That(set.Sample(30, 8).Pixels, Is.Not.EqualTo(a.Pixels));
        // Recover each drawn index from its pixel and label (label·100 + offset, pixel = index mod 256).
        var index = Enumerable.Range(0, 30).Select(i => Enumerable.Range(a.Labels[i] * 100, 100).Single(j => j % 256 == a.Pixels[i])).ToArray();
        Assert.That(index, Is.Ordered.Ascending);
        Assert.That(index.Distinct().Count(), Is.EqualTo(30));
        Assert.That(a.Labels.Distinct().Count(), Is.EqualTo(3));
        Assert.That(set.Sample(300, 1), Is.SameAs(set));
        Assert.That(() => set.Sample(0, 1), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("ImageSet.Sample"));
    }

    [Test]
    public void Crop_flip_and_normalise_match_a_hand_computed_image()
    {
        // Channel 0 is 1..9, channel 1 ten times it. Padding 1, offset (dy, dx) = (0, 2), flipped: the padded 5x5 image's
        // rows 0-2, columns 2-4, mirrored. Row 0 is padding; row 1 is [2,3,0] mirrored = [0,3,2]; row 2 [5,6,0] -> [0,6,5].
        byte[] src = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20, 30, 40, 50, 60, 70, 80, 90];
        int[] expected0 = [0, 0, 0, 0, 3, 2, 0, 6, 5];
        var norm = new Normalization([0.5, 0.1], [0.25, 2.0]);
        var dst = new float[18];
        ImageTransform.Apply(src, 2, 3, 3, padding: 1, dy: 0, dx: 2, flip: true, norm, dst);
        for (int i = 0; i < 9; i++)
        {
            Assert.That(dst[i], Is.EqualTo((expected0[i] / 255.0 - 0.5) / 0.25).Within(1e-5), $"channel 0, pixel {i}");
            Assert.That(dst[9 + i], Is.EqualTo((expected0[i] * 10 / 255.0 - 0.1) / 2.0).Within(1e-5), $"channel 1, pixel {i}");
        }
        // No padding, no flip: plain normalisation.
        ImageTransform.Apply(src, 2, 3, 3, 0, 0, 0, false, norm, dst);
        for (int i = 0; i < 18; i++)
            Assert.That(dst[i], Is.EqualTo((src[i] / 255.0 - norm.Mean[i / 9]) / norm.Std[i / 9]).Within(1e-5));
        // Offset (2, 0) without flip: the image moves right and up by one; column 0 and row 2 are padding.
        ImageTransform.Apply(src, 1, 3, 3, 1, 2, 0, false, new Normalization([0], [1]), dst.AsSpan(0, 9));
        Assert.That(dst[..9].Select(v => (int)Math.Round(v * 255)), Is.EqualTo(new[] { 0, 4, 5, 0, 7, 8, 0, 0, 0 }));
    }

    [Test]
    public void Channel_statistics_match_a_float64_computation()
    {
        var g = new Generator(5);
        var pixels = Enumerable.Range(0, 6 * 3 * 4 * 4).Select(_ => (byte)g.NextInt64(0, 256)).ToArray();
        var set = new ImageSet(pixels, [0, 1, 2, 0, 1, 2], 3, 4, 4, Three, "random");
        var norm = Normalization.Of(set);
        for (int c = 0; c < 3; c++)
        {
            var values = Enumerable.Range(0, 6).SelectMany(i => pixels.Skip(i * 48 + c * 16).Take(16)).Select(v => v / 255.0).ToArray();
            double mean = values.Average(), std = Math.Sqrt(values.Select(v => (v - mean) * (v - mean)).Average());
            Assert.That(norm.Mean[c], Is.EqualTo(mean).Within(1e-12));
            Assert.That(norm.Std[c], Is.EqualTo(std).Within(1e-9));
        }
        Assert.That(() => new Normalization([0.5], [0]).Check(1, "op"), Throws.ArgumentException.With.Message.Contains("std"));
        Assert.That(() => new VisionLoader(set, 2, Augmentation.None, new Normalization([0.5], [1]), false, false, 1), Throws.ArgumentException.With.Message.Contains("1 means"));
    }

    static ImageSet RandomSet(int count, ulong seed)
    {
        var g = new Generator(seed);
        var pixels = Enumerable.Range(0, count * 3 * 6 * 6).Select(_ => (byte)g.NextInt64(0, 256)).ToArray();
        return new ImageSet(pixels, Enumerable.Range(0, count).Select(i => i % 3).ToArray(), 3, 6, 6, Three, "random");
    }

    static (float[] Images, long[] Labels) Read(VisionLoader loader)
    {
        var (x, y) = loader.Next();
        using (x) using (y) return (x.ToArray<float>(), y.ToArray<long>());
    }

    [Test]
    public void The_loader_gives_the_same_batches_for_a_seed_whatever_the_timing_or_resume_point()
    {
        var set = RandomSet(50, 3);
        var norm = Normalization.Of(set);
        var aug = new Augmentation(2, true, ErasingProbability: 0.5);
        using var a = new VisionLoader(set, 8, aug, norm, shuffle: true, dropLast: true, seed: 42);
        using var b = new VisionLoader(set, 8, aug, norm, shuffle: true, dropLast: true, seed: 42);
        Assert.That(a.BatchesPerEpoch, Is.EqualTo(6));
        var first = Enumerable.Range(0, 14).Select(_ => Read(a)).ToArray(); // two epochs and a bit, back to back
        for (int k = 0; k < 14; k++)
        {
            if (k % 3 == 0) Thread.Sleep(20); // the background batch is long finished
            var got = Read(b);
            Assert.That(got.Images, Is.EqualTo(first[k].Images), $"batch {k}");
            Assert.That(got.Labels, Is.EqualTo(first[k].Labels), $"batch {k}");
        }
        using var resumed = new VisionLoader(set, 8, aug, norm, true, true, 42) { Position = 9 };
        Assert.That(Read(resumed).Images, Is.EqualTo(first[9].Images), "a resumed loader continues where the first one was");
        using var other = new VisionLoader(set, 8, aug, norm, true, true, 43);
        Assert.That(Read(other).Images, Is.Not.EqualTo(first[0].Images), "another seed, other batches");
        Assert.That(first[0].Images, Is.Not.EqualTo(first[6].Images), "epochs are shuffled afresh");
    }

    [Test]
    public void A_training_epoch_visits_each_image_once_and_batches_hold_the_drawn_images()
    {
        var set = RandomSet(48, 4);
        var norm = Normalization.Of(set);
        using var loader = new VisionLoader(set, 12, Augmentation.None, norm, shuffle: true, dropLast: true, seed: 7);
        var seen = new List<int>();
        var dst = new float[set.ImageSize];
        for (int k = 0; k < loader.BatchesPerEpoch; k++)
        {
            var indices = loader.Indices(k);
            var (images, labels) = Read(loader);
            seen.AddRange(indices);
            Assert.That(labels, Is.EqualTo(indices.Select(i => (long)set.Labels[i]).ToArray()));
            for (int b = 0; b < indices.Length; b++)
            {
                ImageTransform.Apply(set.Image(indices[b]), 3, 6, 6, 0, 0, 0, false, norm, dst);
                Assert.That(images.AsSpan(b * dst.Length, dst.Length).ToArray(), Is.EqualTo(dst), $"batch {k} image {b}");
            }
        }
        Assert.That(seen.Order(), Is.EqualTo(Enumerable.Range(0, 48)), "a permutation of the set");
        Assert.That(seen, Is.Not.EqualTo(Enumerable.Range(0, 48)), "shuffled");
    }

    [Test]
    public void An_evaluation_loader_keeps_order_and_the_last_partial_batch()
    {
        var set = RandomSet(10, 5);
        using var loader = new VisionLoader(set, 4, Augmentation.None, Normalization.Of(set), shuffle: false, dropLast: false, seed: 0);
        Assert.That(loader.BatchesPerEpoch, Is.EqualTo(3));
        var labels = Enumerable.Range(0, 3).SelectMany(_ => Read(loader).Labels).ToArray();
        Assert.That(labels, Is.EqualTo(set.Labels.Select(l => (long)l).ToArray()));
        Assert.That(() => new VisionLoader(set, 11, Augmentation.None, Normalization.Of(set), true, dropLast: true, 0),
            Throws.ArgumentException.With.Message.Contains("10 images, fewer than one batch of 11"));
    }

    [Test]
    public void Random_crop_offsets_stay_in_range_and_flip_about_half_the_images()
    {
        var aug = new Augmentation(4, true);
        var g = new Generator(11);
        int flips = 0, n = 4000;
        var offsets = new HashSet<int>();
        for (int i = 0; i < n; i++)
        {
            var (dy, dx, flip) = aug.Draw(g);
            Assert.That(dy, Is.InRange(0, 8)); Assert.That(dx, Is.InRange(0, 8));
            offsets.Add(dy); if (flip) flips++;
        }
        Assert.That(offsets, Has.Count.EqualTo(9), "every offset in [0, 2·padding] occurs");
        Assert.That(flips, Is.InRange(n / 2 - 150, n / 2 + 150));
        Assert.That(Augmentation.None.Draw(g), Is.EqualTo((0, 0, false)));
    }

    [Test]
    public void Random_erasing_boxes_fit_the_image_follow_the_area_and_aspect_ranges_and_occur_at_the_given_rate()
    {
        var aug = new Augmentation(0, false, ErasingProbability: 0.5);
        var g = new Generator(5);
        int erased = 0, n = 4000;
        double areaSum = 0;
        var tops = new HashSet<int>();
        for (int i = 0; i < n; i++)
        {
            var box = aug.DrawErasing(g, 28, 28);
            if (box.Height == 0) continue;
            erased++;
            Assert.That(box.Top + box.Height, Is.LessThanOrEqualTo(28)); Assert.That(box.Left + box.Width, Is.LessThanOrEqualTo(28));
            Assert.That(box.Top, Is.GreaterThanOrEqualTo(0)); Assert.That(box.Left, Is.GreaterThanOrEqualTo(0));
            Assert.That(box.Height, Is.LessThan(28)); Assert.That(box.Width, Is.LessThan(28));
            double fraction = box.Height * box.Width / 784.0;
            // s in [0.02, 0.33] before each side is rounded: at most half a pixel either way on each side.
            Assert.That(fraction, Is.InRange(0.02 * 0.6, 0.33 * 1.2));
            Assert.That(box.Height / (double)box.Width, Is.InRange(0.3 / 1.6, 3.3 * 1.6));
            areaSum += fraction; tops.Add(box.Top);
        }
        Assert.That(erased, Is.InRange(n / 2 - 150, n / 2 + 150), "p = 0.5");
        // E[s] = 0.175 for s ~ U(0.02, 0.33); draws that do not fit (large s with an extreme aspect) are redrawn, which lowers the mean a little.
        Assert.That(areaSum / erased, Is.InRange(0.14, 0.18));
        Assert.That(tops, Has.Count.GreaterThan(20), "boxes start all over the image");

        // Without erasing no random number is drawn: the stream after Draw is what it was before erasing existed.
        var withErasingOff = new Generator(9); var plain = new Generator(9);
        new Augmentation(4, true).DrawErasing(withErasingOff, 28, 28);
        Assert.That(withErasingOff.NextUInt64(), Is.EqualTo(plain.NextUInt64()));
        Assert.That(new Augmentation(0, false, 1.0).DrawErasing(new Generator(1), 28, 28).Height, Is.GreaterThan(0));
        Assert.That(() => new Augmentation(0, false, 1.5).DrawErasing(g, 28, 28), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("[0, 1]"));
    }

    [Test]
    public void Erase_clears_the_box_in_every_channel_and_nothing_else()
    {
        var image = Enumerable.Range(1, 2 * 4 * 5).Select(v => (float)v).ToArray();
        ImageTransform.Erase(image, 2, 4, 5, (1, 2, 2, 3));
        for (int c = 0; c < 2; c++)
            for (int y = 0; y < 4; y++)
                for (int x = 0; x < 5; x++)
                {
                    bool inside = y >= 1 && y < 3 && x >= 2 && x < 5;
                    Assert.That(image[c * 20 + y * 5 + x], Is.EqualTo(inside ? 0f : c * 20 + y * 5 + x + 1), $"c {c} y {y} x {x}");
                }
        Assert.That(() => ImageTransform.Erase(image, 2, 4, 5, (3, 0, 2, 2)), Throws.InstanceOf<ArgumentOutOfRangeException>().With.Message.Contains("4x5"));
    }

    [Test]
    public void Fashion_mnist_loads_with_its_published_sizes_and_class_balance()
    {
        VisionTestData.RequireFashionMnist();
        var (train, test) = Idx.LoadFolder(VisionTestData.FashionMnist);
        Assert.That((train.Count, test.Count), Is.EqualTo((60000, 10000)));
        Assert.That((train.Channels, train.Height, train.Width), Is.EqualTo((1, 28, 28)));
        Assert.That(train.Labels.CountBy(l => l).Select(p => p.Value), Is.All.EqualTo(6000), "6,000 training images per class");
        Assert.That(test.Labels.CountBy(l => l).Select(p => p.Value), Is.All.EqualTo(1000), "1,000 test images per class");
        var (mean, std) = train.ChannelStatistics();
        Assert.That(mean[0], Is.EqualTo(0.2860).Within(5e-4), "Fashion-MNIST's often-quoted mean");
        Assert.That(std[0], Is.EqualTo(0.3530).Within(5e-4), "and standard deviation");
    }
}
