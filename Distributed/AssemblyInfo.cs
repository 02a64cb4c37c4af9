// The tests reach the raw binding (MpiNative) to check that an MPI error code becomes an exception naming the call.
using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("AttnCore.Tests")]
