// Kernels stage data in stackalloc'd scratch that they always write before reading; zero-filling it
// first (the C# default) costs a memset per call that shows up in small kernels.
[module: System.Runtime.CompilerServices.SkipLocalsInit]

// Softmax.ExpShiftSum over spans exposes the vector exp to its accuracy test only, so it is internal, not public.
[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("AttnCore.Tests")]
