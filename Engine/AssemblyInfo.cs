// Members that exist only for the layers above and for tests, not for users, are internal and opened to
// exactly these assemblies: the optimizer steps (Tensor.AdamUpdate_, SgdUpdate_) and Tensor.GeluBackward for
// Autograd's optimizers and rules; Tensor.Storage for the cuBLAS comparison in the CLI's bench and for tests that
// inspect storage sharing; Tensor.Storage and Backend for AttnCore.Distributed, which stages gradients through pinned
// host buffers without a temporary array per copy; Tensor.Storage for AttnCore.Models' GptDecoder, which runs a CPU
// GPT's inference step as kernel calls over the weights' and the cache's arrays, no tensor op in between. Kernels/AssemblyInfo.cs does the same for Kernels' test-only members.
using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("AttnCore.Autograd")]
[assembly: InternalsVisibleTo("AttnCore.Tests")]
[assembly: InternalsVisibleTo("attncore")]
[assembly: InternalsVisibleTo("AttnCore.Distributed")]
[assembly: InternalsVisibleTo("AttnCore.Models")]
