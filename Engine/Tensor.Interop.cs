using SnTensor = System.Numerics.Tensors.Tensor;
using System.Numerics.Tensors;

namespace AttnCore;

// Conversion to and from System.Numerics.Tensors, so AttnCore tensors meet the rest of .NET's numeric stack.
public sealed partial class Tensor
{
    /// <summary>A copy as a System.Numerics.Tensors <see cref="Tensor{T}"/> of the same shape (float32 tensors).</summary>
    public Tensor<float> ToSystemTensor()
    {
        if (DType != DType.Float32) throw new ArgumentException($"ToSystemTensor: needs a float32 tensor, got {DType.Name()}; convert with To(DType.Float32)");
        var lengths = Layout.Shape.Select(d => (nint)d).ToArray();
        return SnTensor.Create(ToArray<float>(), lengths);
    }

    /// <summary>A float32 AttnCore tensor holding a copy of <paramref name="source"/>.</summary>
    public static Tensor FromSystemTensor(ReadOnlyTensorSpan<float> source, Device? device = null)
    {
        var shape = source.Lengths.ToArray().Select(l => checked((int)l)).ToArray();
        var data = new float[source.FlattenedLength];
        source.FlattenTo(data);
        return FromArray(data, shape, device);
    }

    /// <summary>A float32 AttnCore tensor holding a copy of <paramref name="source"/>.</summary>
    public static Tensor FromSystemTensor(Tensor<float> source, Device? device = null) => FromSystemTensor(source.AsReadOnlyTensorSpan(), device);

    /// <summary>Copies this (float32) tensor's values into <paramref name="destination"/>, which must have the same shape.</summary>
    public void CopyTo(TensorSpan<float> destination)
    {
        var lengths = destination.Lengths.ToArray();
        if (lengths.Length != Rank || !lengths.Select(l => (int)l).SequenceEqual(Layout.Shape))
            throw new ArgumentException($"CopyTo: destination has shape [{string.Join(",", lengths)}], tensor has {Describe()}");
        var src = SnTensor.Create(ToArray<float>(), lengths);
        src.AsReadOnlyTensorSpan().CopyTo(destination);
    }
}
