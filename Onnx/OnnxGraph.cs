using System.Runtime.InteropServices;
using AttnCore.Models.Training;
using AttnCore.Onnx.Proto;
using Google.Protobuf;

namespace AttnCore.Onnx;

/// <summary>
/// One ONNX graph under construction: typed inputs and outputs, weights as initializers, and nodes of the
/// standard (empty) domain at <see cref="Opset"/>. Every helper adds one node and returns the name of its
/// output, so a layer's export reads like its Forward. Values are named by the caller's prefix (the module
/// path, e.g. <c>blocks.0.attn</c>) plus a counter, and weights keep their state-dict names.
/// </summary>
public sealed class OnnxGraph
{
    /// <summary>The ONNX operator set the exporter targets (LayerNormalization needs 17).</summary>
    public const int Opset = 17;
    /// <summary>The IR version that goes with opset 17 (ONNX 1.12).</summary>
    public const int IrVersion = 8;

    private readonly GraphProto _graph = new();
    private readonly Dictionary<Tensor, string> _weights = new(ReferenceEqualityComparer.Instance);
    private readonly HashSet<string> _names = [];
    private readonly Dictionary<string, int> _counters = [];
    private readonly List<StringStringEntryProto> _metadata = [];

    /// <summary>An empty graph named <paramref name="name"/>.</summary>
    public OnnxGraph(string name) { _graph.Name = name; }

    /// <summary>The ONNX element types the exporter writes.</summary>
    public enum ElementType
    {
        /// <summary>float32</summary>
        Float = (int)TensorProto.Types.DataType.Float,
        /// <summary>int64 (token ids)</summary>
        Int64 = (int)TensorProto.Types.DataType.Int64,
        /// <summary>bool (masks)</summary>
        Bool = (int)TensorProto.Types.DataType.Bool,
    }

    /// <summary>Names of the graph's inputs, in order.</summary>
    public IEnumerable<string> InputNames => _graph.Input.Select(i => i.Name);
    /// <summary>Names of the graph's outputs, in order.</summary>
    public IEnumerable<string> OutputNames => _graph.Output.Select(o => o.Name);
    /// <summary>The op types used so far (for error messages and docs).</summary>
    public IEnumerable<string> OpTypes => _graph.Node.Select(n => n.OpType).Distinct();

    /// <summary>
    /// Declares a graph input. Each dim is an int (fixed size) or a string (a named dynamic axis such as
    /// "batch"; equal names mean equal sizes).
    /// </summary>
    public string Input(string name, ElementType type, params object[] dims)
    {
        _graph.Input.Add(ValueInfo(Claim(name), type, dims));
        return name;
    }

    /// <summary>
    /// Declares <paramref name="value"/> a graph output named <paramref name="name"/> (through an Identity node);
    /// <paramref name="dims"/> as for <see cref="Input"/>, or null when the shape is not declared.
    /// </summary>
    public void Output(string value, string name, ElementType type, params object[]? dims)
    {
        var node = new NodeProto { OpType = "Identity", Name = $"Identity_{_graph.Node.Count}" };
        node.Input.Add(value);
        node.Output.Add(Claim(name));
        _graph.Node.Add(node);
        _graph.Output.Add(ValueInfo(name, type, dims));
    }

    /// <summary>A key/value pair stored in the model's metadata_props (ONNX Runtime shows them as custom metadata).</summary>
    public void Metadata(string key, string value) => _metadata.Add(new StringStringEntryProto { Key = key, Value = value });

    /// <summary>
    /// The initializer holding <paramref name="weight"/> (float32, any device), added on first use under
    /// <paramref name="name"/>: a tensor used twice (tied weights) is stored once.
    /// </summary>
    public string Weight(Tensor weight, string name)
    {
        if (_weights.TryGetValue(weight, out var existing)) return existing;
        if (weight.DType != DType.Float32)
            throw new NotSupportedException($"ONNX export: weight '{name}' {Shape.Format(weight.Shape)} is {weight.DType}; the exporter writes Float32 weights only");
        using var contiguous = weight.Contiguous();
        var data = contiguous.ToArray<float>();
        var proto = new TensorProto { Name = Claim(name), DataType = (int)TensorProto.Types.DataType.Float, RawData = RawBytes<float>(data) };
        proto.Dims.AddRange(weight.Shape.Select(d => (long)d));
        _graph.Initializer.Add(proto);
        _weights[weight] = name;
        return name;
    }

    /// <summary>A float32 constant (an initializer) of the given shape.</summary>
    public string Floats(string hint, float[] values, params long[] dims)
    {
        var proto = new TensorProto { Name = Fresh(hint), DataType = (int)TensorProto.Types.DataType.Float, RawData = RawBytes<float>(values) };
        proto.Dims.AddRange(dims);
        _graph.Initializer.Add(proto);
        return proto.Name;
    }

    /// <summary>A float32 scalar constant.</summary>
    public string Scalar(string hint, float value) => Floats(hint, [value]);

    /// <summary>An int64 vector constant (shapes, axes, split sizes).</summary>
    public string Ints(string hint, params long[] values)
    {
        var proto = new TensorProto { Name = Fresh(hint), DataType = (int)TensorProto.Types.DataType.Int64, RawData = RawBytes<long>(values) };
        proto.Dims.Add(values.Length);
        _graph.Initializer.Add(proto);
        return proto.Name;
    }

    /// <summary>An int64 scalar (0-d) constant.</summary>
    public string IntScalar(string hint, long value)
    {
        var proto = new TensorProto { Name = Fresh(hint), DataType = (int)TensorProto.Types.DataType.Int64, RawData = RawBytes<long>([value]) };
        _graph.Initializer.Add(proto);
        return proto.Name;
    }

    /// <summary>Adds a node of the standard domain with one output named after <paramref name="hint"/>; returns that name.</summary>
    public string Node(string opType, string[] inputs, string hint, params Attribute[] attributes) => Node(opType, inputs, [hint], attributes)[0];

    /// <summary>Adds a node with one output per hint; returns the output names.</summary>
    public string[] Node(string opType, string[] inputs, string[] hints, params Attribute[] attributes)
    {
        var outputs = hints.Select(Fresh).ToArray();
        var node = new NodeProto { OpType = opType, Name = $"{opType}_{_graph.Node.Count}" };
        node.Input.AddRange(inputs);
        node.Output.AddRange(outputs);
        foreach (var a in attributes) node.Attribute.Add(a.Proto);
        _graph.Node.Add(node);
        return outputs;
    }

    /// <summary>A node attribute: an int, a float, or a list of ints.</summary>
    public readonly struct Attribute
    {
        private Attribute(AttributeProto proto) { Proto = proto; }
        internal AttributeProto Proto { get; }

        /// <summary>An int attribute.</summary>
        public static Attribute Int(string name, long value) => new(new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value });
        /// <summary>A float attribute.</summary>
        public static Attribute Float(string name, float value) => new(new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value });
        /// <summary>A list-of-ints attribute.</summary>
        public static Attribute Ints(string name, params long[] values)
        {
            var proto = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
            proto.Ints.AddRange(values);
            return new(proto);
        }
        /// <summary>A string attribute (Pad's mode).</summary>
        public static Attribute String(string name, string value) => new(new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) });
        /// <summary>A tensor attribute (ConstantOfShape's value).</summary>
        internal static Attribute Tensor(string name, TensorProto value) => new(new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Tensor, T = value });
    }

    // ---- the operators the layer mappings use, one node each (ONNX operator names, opset 17 semantics) ----

    /// <summary>a @ b with NumPy broadcasting of the batch dims.</summary>
    public string MatMul(string a, string b, string hint) => Node("MatMul", [a, b], hint);
    /// <summary>a + b (broadcasting).</summary>
    public string Add(string a, string b, string hint) => Node("Add", [a, b], hint);
    /// <summary>a - b (broadcasting).</summary>
    public string Sub(string a, string b, string hint) => Node("Sub", [a, b], hint);
    /// <summary>a · b (broadcasting).</summary>
    public string Mul(string a, string b, string hint) => Node("Mul", [a, b], hint);
    /// <summary>a / b (broadcasting).</summary>
    public string Div(string a, string b, string hint) => Node("Div", [a, b], hint);
    /// <summary>Permutes the dims.</summary>
    public string Transpose(string x, string hint, params long[] perm) => Node("Transpose", [x], hint, Attribute.Ints("perm", perm));
    /// <summary>Reshape to <paramref name="shape"/> (0 copies the input's dim, -1 is inferred).</summary>
    public string Reshape(string x, string hint, params long[] shape) => Node("Reshape", [x, Ints(hint + ".shape", shape)], hint);
    /// <summary>Inserts size-1 dims at <paramref name="axes"/>.</summary>
    public string Unsqueeze(string x, string hint, params long[] axes) => Node("Unsqueeze", [x, Ints(hint + ".axes", axes)], hint);
    /// <summary>Rows of <paramref name="table"/> at <paramref name="indices"/> (an embedding lookup).</summary>
    public string Gather(string table, string indices, string hint, long axis = 0) => Node("Gather", [table, indices], hint, Attribute.Int("axis", axis));
    /// <summary>Softmax over the last dim.</summary>
    public string Softmax(string x, string hint) => Node("Softmax", [x], hint, Attribute.Int("axis", -1));
    /// <summary>Concatenation along <paramref name="axis"/>.</summary>
    public string Concat(string[] parts, string hint, long axis) => Node("Concat", parts, hint, Attribute.Int("axis", axis));
    /// <summary>The shape of x as an int64 vector.</summary>
    public string ShapeOf(string x, string hint) => Node("Shape", [x], hint);
    /// <summary>Dim <paramref name="dim"/> of x's shape as an int64 scalar.</summary>
    public string Dim(string x, long dim, string hint) => Gather(ShapeOf(x, hint + ".shape"), IntScalar(hint + ".index", dim), hint);
    /// <summary>[start, start + 1, ..., limit - 1] (int64 scalars in, int64 vector out).</summary>
    public string Range(string start, string limit, string hint) => Node("Range", [start, limit, IntScalar(hint + ".step", 1)], hint);

    /// <summary>
    /// Splits the last dim of <paramref name="x"/> into consecutive pieces of the given sizes (the packed
    /// q/k/v projection).
    /// </summary>
    public string[] SplitLast(string x, string hint, params long[] sizes) =>
        Node("Split", [x, Ints(hint + ".sizes", sizes)], sizes.Select((_, i) => $"{hint}.{i}").ToArray(), Attribute.Int("axis", -1));

    /// <summary>ONNX LayerNormalization over the last dim (opset 17); <paramref name="bias"/> may be null.</summary>
    public string LayerNorm(string x, string scale, string? bias, double eps, string hint) =>
        Node("LayerNormalization", bias is null ? [x, scale] : [x, scale, bias], hint, Attribute.Int("axis", -1), Attribute.Float("epsilon", (float)eps));

    /// <summary>
    /// The exact (erf) GELU, expanded into standard operators since ONNX's Gelu only arrives in opset 20:
    /// 0.5 · x · (1 + erf(x / √2)), the form the engine's Gelu computes.
    /// </summary>
    public string Gelu(string x, string hint)
    {
        var scaled = Mul(x, Scalar(hint + ".inv_sqrt2", (float)(1 / Math.Sqrt(2))), hint + ".scaled");
        var erf = Node("Erf", [scaled], hint + ".erf");
        var onePlus = Add(erf, Scalar(hint + ".one", 1f), hint + ".one_plus");
        var half = Mul(x, Scalar(hint + ".half", 0.5f), hint + ".half_x");
        return Mul(half, onePlus, hint);
    }

    /// <summary>
    /// A boolean [Tq, Tk] mask that is true where query i may see key j, i.e. j ≤ i + (Tk - Tq): the engine's
    /// bottom-right aligned causal rule, so queries that follow a key/value cache see the whole cache. Built from
    /// the scores' dynamic shape with Trilu, so one graph serves every sequence length.
    /// </summary>
    public string CausalMask(string scores, string hint)
    {
        var shape = ShapeOf(scores, hint + ".shape");
        var tq = Gather(shape, IntScalar(hint + ".q_axis", -2), hint + ".tq");
        var tk = Gather(shape, IntScalar(hint + ".k_axis", -1), hint + ".tk");
        var size = Concat([Unsqueeze(tq, hint + ".tq1", 0), Unsqueeze(tk, hint + ".tk1", 0)], hint + ".size", 0);
        var one = new TensorProto { DataType = (int)TensorProto.Types.DataType.Float, RawData = RawBytes<float>([1f]) };
        one.Dims.Add(1);
        var ones = Node("ConstantOfShape", [size], hint + ".ones", Attribute.Tensor("value", one));
        var lower = Node("Trilu", [ones, Sub(tk, tq, hint + ".offset")], hint + ".lower", Attribute.Int("upper", 0));
        return Node("Cast", [lower], hint, Attribute.Int("to", (long)ElementType.Bool));
    }

    /// <summary>Where(keep, x, -inf): hidden scores get no weight after the softmax.</summary>
    public string MaskScores(string scores, string keep, string hint) =>
        Node("Where", [keep, scores, Scalar(hint + ".neg_inf", float.NegativeInfinity)], hint);

    /// <summary>The model: this graph, opset <see cref="Opset"/> of the standard domain, and the producer's name.</summary>
    internal ModelProto ToModel(string docString)
    {
        var model = new ModelProto { IrVersion = IrVersion, ProducerName = "AttnCore", ProducerVersion = typeof(OnnxGraph).Assembly.GetName().Version?.ToString() ?? "", DocString = docString, Graph = _graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = Opset });
        model.MetadataProps.AddRange(_metadata);
        return model;
    }

    /// <summary>Writes the model to <paramref name="path"/> through a temporary file renamed over it.</summary>
    public void Save(string path, string docString)
    {
        if (_graph.Output.Count == 0) throw new InvalidOperationException($"ONNX export: graph '{_graph.Name}' has no outputs");
        var model = ToModel(docString);
        AtomicFile.Write(path, temporary =>
        {
            using var stream = File.Create(temporary);
            model.WriteTo(stream);
        });
    }

    private static ValueInfoProto ValueInfo(string name, ElementType type, object[]? dims)
    {
        var tensorType = new TypeProto.Types.Tensor { ElemType = (int)type };
        if (dims is null) return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensorType } };
        var shape = new TensorShapeProto();
        foreach (var d in dims)
            shape.Dim.Add(d switch
            {
                int n => new TensorShapeProto.Types.Dimension { DimValue = n },
                long n => new TensorShapeProto.Types.Dimension { DimValue = n },
                string axis => new TensorShapeProto.Types.Dimension { DimParam = axis },
                _ => throw new ArgumentException($"ONNX export: dim {d} of '{name}' is neither a size nor an axis name"),
            });
        tensorType.Shape = shape;
        return new ValueInfoProto { Name = name, Type = new TypeProto { TensorType = tensorType } };
    }

    private static ByteString RawBytes<T>(T[] values) where T : unmanaged =>
        // ONNX raw_data is little-endian, as every platform .NET 10 runs on.
        ByteString.CopyFrom(MemoryMarshal.AsBytes(values.AsSpan()));

    private string Claim(string name)
    {
        if (!_names.Add(name)) throw new InvalidOperationException($"ONNX export: the name '{name}' is used twice in graph '{_graph.Name}'");
        return name;
    }

    private string Fresh(string hint)
    {
        if (_names.Add(hint)) return hint;
        int n = _counters.GetValueOrDefault(hint);
        string name;
        do name = $"{hint}_{++n}"; while (!_names.Add(name));
        _counters[hint] = n;
        return name;
    }
}
