using NUnit.Framework;
using static AttnCore.Tests.Properties.PropertyGen;

namespace AttnCore.Tests.Properties;

/// <summary>
/// The same properties with <see cref="PropertyGen.LongIterations"/> cases each (minutes): run by hand, e.g.
/// <c>dotnet test -c Release --filter "FullyQualifiedName~LongPropertyRuns"</c>, after changing a kernel or a rule.
/// </summary>
[TestFixture, Explicit("minutes long; the suite runs the same properties with fewer cases"), Category("Engine")]
public class LongPropertyRuns
{
    [TestCaseSource(typeof(ElementwisePropertyTests), nameof(ElementwisePropertyTests.Unary))]
    public void Unary(ElementwisePropertyTests.UnaryCase c)
    {
        ElementwisePropertyTests.UnaryValues(c, LongIterations);
        ElementwisePropertyTests.UnaryGradients(c, LongIterations / 20);
    }

    [TestCaseSource(typeof(ElementwisePropertyTests), nameof(ElementwisePropertyTests.Binary))]
    public void Binary(ElementwisePropertyTests.BinaryCase c)
    {
        ElementwisePropertyTests.BinaryValues(c, LongIterations);
        if (c.GradA is not null) ElementwisePropertyTests.BinaryGradients(c, LongIterations / 20);
    }

    [Test]
    public void MatMul_and_row_ops()
    {
        MatMulRowOpsPropertyTests.MatMulValues(LongIterations);
        MatMulRowOpsPropertyTests.MatMulGradients(LongIterations / 20);
        MatMulRowOpsPropertyTests.SoftmaxValues(false, LongIterations);
        MatMulRowOpsPropertyTests.SoftmaxValues(true, LongIterations);
        MatMulRowOpsPropertyTests.LayerNormValues(LongIterations);
        MatMulRowOpsPropertyTests.RowOpGradients(LongIterations / 20);
    }
}
