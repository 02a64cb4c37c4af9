namespace AttnCore.Models.Training;

/// <summary>
/// Every file a run writes goes through here: it is written under a hidden temporary name in the same folder
/// and renamed over the target, so readers see the old file or the new one, never half of one; when writing
/// fails the temporary file is deleted, so a failed run leaves nothing behind but its last good files.
/// </summary>
public static class AtomicFile
{
    /// <summary>Calls <paramref name="writeTemporary"/> with the temporary path, then renames it to <paramref name="path"/>.</summary>
    public static void Write(string path, Action<string> writeTemporary)
    {
        string full = Path.GetFullPath(path);
        string folder = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(folder);
        // Same folder (a rename across file systems is a copy); the target's extension kept for writers that go by it.
        string temporary = Path.Combine(folder, $".{Path.GetFileName(full)}.tmp-{Environment.ProcessId}{Path.GetExtension(full)}");
        try
        {
            writeTemporary(temporary);
            File.Move(temporary, full, overwrite: true);
        }
        finally
        {
            // The original failure is the one to report; a temporary file that cannot be removed either is left to the OS.
            try { File.Delete(temporary); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }
}
