namespace AttnCore.Models.Data;

/// <summary>
/// A character-level corpus (tinyshakespeare): the vocabulary is the sorted set of characters, the first
/// <c>trainFraction</c> of the text is for training and the rest for validation, and batches are random
/// windows of BlockSize+1 characters (input, next-character target), as nanoGPT's get_batch.
/// </summary>
public sealed class CharDataset
{
    private readonly Dictionary<char, int> _index;

    /// <summary>Builds the vocabulary from <paramref name="text"/> and splits it.</summary>
    public CharDataset(string text, double trainFraction = 0.9)
    {
        if (text.Length < 2) throw new ArgumentException("CharDataset: the text needs at least two characters");
        Vocabulary = text.Distinct().OrderBy(c => c).ToArray();
        _index = Vocabulary.Select((c, i) => (c, i)).ToDictionary(p => p.c, p => p.i);
        var all = Encode(text);
        int split = (int)(all.Length * trainFraction);
        Train = all[..split];
        Validation = all[split..];
    }

    /// <summary>Reads a UTF-8 text file; throws naming the path when it is missing.</summary>
    public static CharDataset FromFile(string path, double trainFraction = 0.9)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"CharDataset: no text file at '{path}'", path);
        return new CharDataset(File.ReadAllText(path), trainFraction);
    }

    /// <summary>The characters, sorted; a token is an index into it.</summary>
    public char[] Vocabulary { get; }
    /// <summary>Training tokens.</summary>
    public long[] Train { get; }
    /// <summary>Validation tokens.</summary>
    public long[] Validation { get; }

    /// <summary>Tokens of <paramref name="text"/>; throws on a character outside the vocabulary.</summary>
    public long[] Encode(string text) => text.Select(c => _index.TryGetValue(c, out int i) ? (long)i
        : throw new ArgumentException($"CharDataset: character '{c}' (U+{(int)c:X4}) is not in the vocabulary")).ToArray();

    /// <summary>The text of <paramref name="tokens"/>.</summary>
    public string Decode(IEnumerable<long> tokens) => new(tokens.Select(t => Vocabulary[t]).ToArray());

    /// <summary>A batch of random windows: inputs and next-character targets, both [batch, block].</summary>
    public (Tensor Inputs, Tensor Targets) Batch(long[] split, int batch, int block, Generator g, Device? device = null)
    {
        if (split.Length <= block) throw new ArgumentException($"CharDataset.Batch: the split has {split.Length} tokens, fewer than a block of {block} + 1");
        var x = new long[batch * block]; var y = new long[batch * block];
        for (int b = 0; b < batch; b++)
        {
            long start = g.NextInt64(0, split.Length - block);
            Array.Copy(split, start, x, b * block, block);
            Array.Copy(split, start + 1, y, b * block, block);
        }
        return (Tensor.FromArray(x, [batch, block], device), Tensor.FromArray(y, [batch, block], device));
    }
}
