using System.Reflection;
using AttnCore.Kernels;
using NUnit.Framework;

namespace AttnCore.Tests.Engine;

/// <summary>
/// The element-wise catalogue agrees with what it describes: one entry per <see cref="UnaryOp"/> and
/// <see cref="BinaryOp"/> read from its [Elementwise] attribute, each differentiable op recorded as OpKind.Unary /
/// Binary carrying its code and saving what its declaration says, the others recording nothing, and the int64 subset
/// the CPU backend's integer switch implements.
/// </summary>
[TestFixture, Category("Engine")]
public class ElementwiseCatalogueTests
{
    [Test]
    public void Has_one_entry_per_op_in_enum_order_each_from_its_attribute()
    {
        Assert.That(ElementwiseCatalogue.Unary.Select(e => e.Name), Is.EqualTo(Enum.GetNames<UnaryOp>()));
        Assert.That(ElementwiseCatalogue.Binary.Select(e => e.Name), Is.EqualTo(Enum.GetNames<BinaryOp>()));
        foreach (var type in new[] { typeof(UnaryOp), typeof(BinaryOp) })
            foreach (var field in type.GetFields(BindingFlags.Public | BindingFlags.Static))
                Assert.That(field.GetCustomAttribute<ElementwiseAttribute>(), Is.Not.Null, $"{type.Name}.{field.Name} declares [Elementwise]");
        // Spot checks against the formulas: e^x is cheapest from its result, a*b needs each input for the other's gradient.
        Assert.That(ElementwiseCatalogue.Of(UnaryOp.Exp).Saves, Is.EqualTo(Saves.Output));
        Assert.That(ElementwiseCatalogue.Of(BinaryOp.Mul).Saves, Is.EqualTo(Saves.Inputs | Saves.ForOtherInput));
        Assert.That(ElementwiseCatalogue.Of(BinaryOp.Lt).Differentiable, Is.False);
        Assert.That(ElementwiseCatalogue.Of(UnaryOp.GeluGrad).Differentiable, Is.False);
    }

    [Test]
    public void A_unary_op_records_its_code_and_saves_what_its_declaration_says()
    {
        foreach (var e in ElementwiseCatalogue.Unary)
        {
            var op = (UnaryOp)e.Code;
            using var x = Tensor.FromArray(new double[] { 0.5, 1.5 }).RequiresGrad_();
            using var y = x.Apply(op, 2);
            if (!e.Differentiable) { Assert.That(y.GradFn, Is.Null, $"{op} is not recorded"); continue; }
            Assert.That(y.GradFn!.Kind, Is.EqualTo(OpKind.Unary), $"{op} recorded");
            Assert.That(y.GradFn.Unary, Is.EqualTo(op));
            Assert.That(y.GradFn.Name, Is.EqualTo(e.Name));
            Assert.That(y.GradFn.Saves, Is.EqualTo(e.Saves), $"{op} saves");
        }
    }

    [Test]
    public void A_binary_op_records_its_code_and_saves_what_its_declaration_says()
    {
        foreach (var e in ElementwiseCatalogue.Binary)
        {
            var op = (BinaryOp)e.Code;
            bool logical = op is BinaryOp.LogicalAnd or BinaryOp.LogicalOr or BinaryOp.LogicalXor;
            using var a = logical ? Tensor.FromArray(new[] { true, false }) : Tensor.FromArray(new double[] { 0.5, 1.5 }).RequiresGrad_();
            using var b = logical ? Tensor.FromArray(new[] { true, true }) : Tensor.FromArray(new double[] { 2.0, 0.25 }).RequiresGrad_();
            using var y = op switch
            {
                BinaryOp.Add => a + b, BinaryOp.Sub => a - b, BinaryOp.Mul => a * b, BinaryOp.Div => a / b,
                BinaryOp.Pow => a.Pow(b), BinaryOp.Maximum => a.Maximum(b), BinaryOp.Minimum => a.Minimum(b),
                BinaryOp.Eq => a.Eq(b), BinaryOp.Ne => a.Ne(b), BinaryOp.Lt => a.Lt(b), BinaryOp.Le => a.Le(b),
                BinaryOp.Gt => a.Gt(b), BinaryOp.Ge => a.Ge(b),
                BinaryOp.LogicalAnd => a.LogicalAnd(b), BinaryOp.LogicalOr => a.LogicalOr(b), BinaryOp.LogicalXor => a.LogicalXor(b),
                BinaryOp.GeluBackward or BinaryOp.GeluTanhBackward => a.Apply(op, b),
                _ => throw new ArgumentOutOfRangeException(nameof(op), $"{op}: add it to this test's switch"),
            };
            if (!e.Differentiable) { Assert.That(y.GradFn, Is.Null, $"{op} is not recorded"); continue; }
            Assert.That(y.GradFn!.Kind, Is.EqualTo(OpKind.Binary), $"{op} recorded");
            Assert.That(y.GradFn.Binary, Is.EqualTo(op));
            Assert.That(y.GradFn.Saves, Is.EqualTo(e.Saves), $"{op} saves (both inputs require gradients)");
        }
    }

    [Test]
    public void The_cpu_int64_switch_implements_exactly_the_ops_the_catalogue_marks_int64()
    {
        foreach (var e in ElementwiseCatalogue.Unary)
        {
            var op = (UnaryOp)e.Code;
            using var x = Tensor.FromArray(new long[] { -3, 0, 4 });
            using var dst = x.EmptyLike();
            void Run() => Device.Cpu.Backend.Unary(op, 2, x.Storage, x.Layout, dst.Storage);
            if (e.Int64) Assert.DoesNotThrow(Run, $"{op} on int64");
            else Assert.That(Run, Throws.TypeOf<NotSupportedException>().With.Message.Contains(op.ToString()), $"{op} on int64");
        }
    }
}
