using System.Runtime.InteropServices;

namespace AttnCore.Distributed;

/// <summary>
/// The binding to Open MPI's C library, libmpi.so.40 (Open MPI 4.x, Debian's openmpi-bin / libopenmpi-dev).
/// Open MPI's predefined handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM ...) are not integers but the addresses of
/// exported structs (ompi_mpi_comm_world ...), so they are looked up with <see cref="NativeLibrary.GetExport"/>;
/// MPI_IN_PLACE is (void*)1 and MPI_STATUS_IGNORE is null. Functions are called through unmanaged function
/// pointers taken from the same handle, so nothing is resolved by the .NET loader's own dlopen.
/// </summary>
/// <remarks>
/// Why dlopen with RTLD_GLOBAL first: Open MPI loads its components (mca_pml_ob1.so, mca_btl_vader.so ...) as
/// plug-ins that resolve symbols of libmpi/libopen-pal against the global namespace. The .NET loader opens
/// libraries RTLD_LOCAL, and then MPI_Init fails inside the plug-ins ("undefined symbol: ompi_..."), so the library
/// is opened through libc's dlopen with RTLD_NOW | RTLD_GLOBAL before any MPI call.
/// </remarks>
internal static unsafe class MpiNative
{
    public const string LibraryName = "libmpi.so.40";
    private const int RtldNow = 0x2, RtldGlobal = 0x100;
    public const int ThreadFunneled = 1;
    public const int MaxErrorString = 256;   // Open MPI's MPI_MAX_ERROR_STRING
    public static readonly nint InPlace = 1;

    [DllImport("libc", EntryPoint = "dlopen")] private static extern nint DlOpen(string file, int mode);
    [DllImport("libc", EntryPoint = "dlerror")] private static extern nint DlError();

    private static nint _handle;
    private static readonly Lock Gate = new();

    /// <summary>The library handle, opened RTLD_NOW | RTLD_GLOBAL on first use; throws naming the library and dlerror's reason.</summary>
    public static nint Handle
    {
        get
        {
            lock (Gate)
            {
                if (_handle != 0) return _handle;
                nint h = DlOpen(LibraryName, RtldNow | RtldGlobal);
                if (h == 0)
                {
                    string why = Marshal.PtrToStringUTF8(DlError()) ?? "unknown reason";
                    throw new DllNotFoundException($"MPI: cannot load {LibraryName} ({why}); install Open MPI (apt-get install openmpi-bin libopenmpi-dev) or run without mpirun for a world of one process");
                }
                _handle = h;
                LoadFunctions(h);
                return h;
            }
        }
    }

    /// <summary>The address of an exported symbol of libmpi (a predefined handle or a function).</summary>
    public static nint Export(string name)
    {
        var h = Handle;
        return NativeLibrary.TryGetExport(h, name, out var address) ? address
            : throw new EntryPointNotFoundException($"MPI: {LibraryName} has no export '{name}'; AttnCore's binding needs Open MPI 4.x");
    }

    // int-returning MPI functions, taken from the dlopen'ed handle.
    public static delegate* unmanaged<int*, nint*, int, int*, int> InitThread;
    public static delegate* unmanaged<int*, int> Initialized;
    public static delegate* unmanaged<int*, int> Finalized;
    public static delegate* unmanaged<int> Finalize;
    public static delegate* unmanaged<nint, int, int> Abort;
    public static delegate* unmanaged<nint, int*, int> CommRank;
    public static delegate* unmanaged<nint, int*, int> CommSize;
    public static delegate* unmanaged<nint, nint, int> CommSetErrhandler;
    public static delegate* unmanaged<nint, nint, int, nint, nint, nint, int> Allreduce;
    public static delegate* unmanaged<nint, nint, int, nint, nint, nint, nint*, int> Iallreduce;
    public static delegate* unmanaged<nint, int, nint, int, nint, int> Bcast;
    public static delegate* unmanaged<nint, int> Barrier;
    public static delegate* unmanaged<nint, int, nint, nint, int, nint, nint, int> Allgather;
    public static delegate* unmanaged<nint*, nint, int> Wait;
    public static delegate* unmanaged<nint*, int*, nint, int> Test;
    public static delegate* unmanaged<int, byte*, int*, int> ErrorString;

    private static void LoadFunctions(nint h)
    {
        nint F(string name) => NativeLibrary.TryGetExport(h, name, out var a) ? a
            : throw new EntryPointNotFoundException($"MPI: {LibraryName} has no function '{name}'");
        InitThread = (delegate* unmanaged<int*, nint*, int, int*, int>)F("MPI_Init_thread");
        Initialized = (delegate* unmanaged<int*, int>)F("MPI_Initialized");
        Finalized = (delegate* unmanaged<int*, int>)F("MPI_Finalized");
        Finalize = (delegate* unmanaged<int>)F("MPI_Finalize");
        Abort = (delegate* unmanaged<nint, int, int>)F("MPI_Abort");
        CommRank = (delegate* unmanaged<nint, int*, int>)F("MPI_Comm_rank");
        CommSize = (delegate* unmanaged<nint, int*, int>)F("MPI_Comm_size");
        CommSetErrhandler = (delegate* unmanaged<nint, nint, int>)F("MPI_Comm_set_errhandler");
        Allreduce = (delegate* unmanaged<nint, nint, int, nint, nint, nint, int>)F("MPI_Allreduce");
        Iallreduce = (delegate* unmanaged<nint, nint, int, nint, nint, nint, nint*, int>)F("MPI_Iallreduce");
        Bcast = (delegate* unmanaged<nint, int, nint, int, nint, int>)F("MPI_Bcast");
        Barrier = (delegate* unmanaged<nint, int>)F("MPI_Barrier");
        Allgather = (delegate* unmanaged<nint, int, nint, nint, int, nint, nint, int>)F("MPI_Allgather");
        Wait = (delegate* unmanaged<nint*, nint, int>)F("MPI_Wait");
        Test = (delegate* unmanaged<nint*, int*, nint, int>)F("MPI_Test");
        ErrorString = (delegate* unmanaged<int, byte*, int*, int>)F("MPI_Error_string");
    }

    /// <summary>Throws <see cref="MpiException"/> naming <paramref name="call"/> when <paramref name="code"/> is not MPI_SUCCESS (0).</summary>
    public static void Check(int code, string call)
    {
        if (code != 0) throw new MpiException(call, code, Describe(code));
    }

    private static string Describe(int code)
    {
        if (ErrorString == null) return "no description";
        byte* text = stackalloc byte[MaxErrorString + 1];
        int length = 0;
        return ErrorString(code, text, &length) == 0 ? Marshal.PtrToStringUTF8((nint)text, Math.Clamp(length, 0, MaxErrorString)) : "no description";
    }
}

/// <summary>An MPI call returned an error code (the communicator is set to MPI_ERRORS_RETURN, so errors come back instead of aborting).</summary>
public sealed class MpiException : InvalidOperationException
{
    /// <summary>An exception for <paramref name="call"/> failing with <paramref name="errorCode"/> (described by MPI_Error_string).</summary>
    public MpiException(string call, int errorCode, string description)
        : base($"{call} failed with MPI error {errorCode}: {description}")
    {
        Call = call;
        ErrorCode = errorCode;
    }

    /// <summary>An exception for a failure that has no MPI error code (a timeout, a disagreement between ranks).</summary>
    public MpiException(string call, string message) : base($"{call}: {message}")
    {
        Call = call;
        ErrorCode = -1;
    }

    /// <summary>The MPI function (or AttnCore operation) that failed.</summary>
    public string Call { get; }
    /// <summary>The MPI error code, or -1 when the failure was not an MPI error code.</summary>
    public int ErrorCode { get; }
}
