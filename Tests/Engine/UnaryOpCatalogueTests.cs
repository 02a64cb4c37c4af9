using AttnCore.Kernels;
using NUnit.Framework;

namespace AttnCore.Tests.Engine;

/// <summary>
/// The unary op catalogue agrees with what it describes: one entry per <see cref="UnaryOp"/>, the OpKind each op
/// records and the Saves its rule is given, and the int64 subset the CPU backend's integer switch implements.
/// </summary>
[TestFixture, Category("Engine")]
public class UnaryOpCatalogueTests
{
    [Test]
    public void Has_one_entry_per_op_in_enum_order()
    {
        Assert.That(UnaryOpCatalogue.All.Select(e => e.Op), Is.EqualTo(Enum.GetValues<UnaryOp>()));
        var kinds = UnaryOpCatalogue.All.Where(e => e.Kind is not null).Select(e => e.Kind!.Value).ToArray();
        Assert.That(kinds, Is.Unique, "two unary ops recording one OpKind would share a derivative rule");
    }

    [Test]
    public void An_op_records_its_catalogued_kind_and_saves_what_the_catalogue_declares()
    {
        foreach (var e in UnaryOpCatalogue.All)
        {
            using var x = Tensor.FromArray(new double[] { 0.5, 1.5 }).RequiresGrad_();
            using var y = x.Apply(e.Op, 2);
            Assert.That(y.GradFn?.Kind, Is.EqualTo(e.Kind), $"{e.Op} recorded");
            if (e.Kind is OpKind kind) Assert.That(GradNode.SavesOf(kind), Is.EqualTo(e.Saves), $"{e.Op} saves");
        }
    }

    [Test]
    public void The_cpu_int64_switch_implements_exactly_the_ops_the_catalogue_marks_int64()
    {
        foreach (var e in UnaryOpCatalogue.All)
        {
            using var x = Tensor.FromArray(new long[] { -3, 0, 4 });
            using var dst = x.EmptyLike();
            void Run() => Device.Cpu.Backend.Unary(e.Op, 2, x.Storage, x.Layout, dst.Storage);
            if (e.Int64) Assert.DoesNotThrow(Run, $"{e.Op} on int64");
            else Assert.That(Run, Throws.TypeOf<NotSupportedException>().With.Message.Contains(e.Op.ToString()), $"{e.Op} on int64");
        }
    }
}
