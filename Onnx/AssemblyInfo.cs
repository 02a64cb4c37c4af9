// The tests read the generated protobuf messages (internal: they are the file format, not AttnCore's API).
[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("AttnCore.Tests")]
