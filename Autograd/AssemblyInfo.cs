// Opened to the tests only: they check which layer norms Backward hands a pending gradient to
// (AutogradExtensions.PendingAddend), a choice with no effect on the values, only on the passes over memory.
using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("AttnCore.Tests")]
