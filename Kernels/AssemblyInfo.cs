// Kernels stage data in stackalloc'd scratch that they always write before reading; zero-filling it
// first (the C# default) costs a memset per call that shows up in small kernels.
[module: System.Runtime.CompilerServices.SkipLocalsInit]
