// safetensors (the format of PyTorch and Hugging Face weights): an 8-byte little-endian header
// length N, N bytes of JSON {"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
// "__metadata__": {string: string}}, then the raw little-endian data, offsets relative to its start.
// Loading validates the whole file before it creates a single tensor, so a bad file loads nothing.
// F32 is written; F32, F64, F16 and BF16 are read (converted to float32).
using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace AutogradNet.IO;

/// <summary>A safetensors file is malformed or inconsistent; nothing was loaded.</summary>
public sealed class SafetensorsFormatException : FormatException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="message">What is wrong, where.</param>
    public SafetensorsFormatException(string message) : base(message) { }
}

/// <summary>Reads and writes safetensors files.</summary>
public static class Safetensors
{
    private const long MaxHeaderBytes = 100L << 20;

    /// <summary>Writes tensors (as F32, sorted by name) and optional string metadata to a file.</summary>
    /// <param name="path">The file to create or overwrite.</param>
    /// <param name="tensors">Name to tensor.</param>
    /// <param name="metadata">Optional "__metadata__" entries.</param>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        using var file = File.Create(path);
        Save(file, tensors, metadata);
    }

    /// <summary>Writes tensors (as F32, sorted by name) and optional string metadata to a stream.</summary>
    /// <param name="stream">The destination.</param>
    /// <param name="tensors">Name to tensor.</param>
    /// <param name="metadata">Optional "__metadata__" entries.</param>
    public static void Save(Stream stream, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var names = tensors.Keys.OrderBy(k => k, StringComparer.Ordinal).ToList();
        if (names.Contains("__metadata__")) throw new ArgumentException("Safetensors.Save: '__metadata__' is reserved and cannot name a tensor.");
        var header = new MemoryStream();
        using (var w = new Utf8JsonWriter(header))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata) w.WriteString(k, v);
                w.WriteEndObject();
            }
            long offset = 0;
            foreach (var name in names)
            {
                var t = tensors[name];
                long bytes = t.NumElements * sizeof(float);
                w.WriteStartObject(name);
                w.WriteString("dtype", "F32");
                w.WriteStartArray("shape");
                foreach (var d in t.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += bytes;
            }
            w.WriteEndObject();
        }
        // Pad the header with spaces so the data starts 8-byte aligned (as the reference writer does).
        while (header.Length % 8 != 0) header.WriteByte((byte)' ');
        Span<byte> len = stackalloc byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
        stream.Write(len);
        header.Position = 0;
        header.CopyTo(stream);
        foreach (var name in names)
        {
            var data = tensors[name].ToArray();
            var bytes = new byte[data.Length * sizeof(float)];
            for (int i = 0; i < data.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(i * 4), data[i]);
            stream.Write(bytes);
        }
    }

    /// <summary>Loads every tensor of a file onto a device (float32), after validating the whole file.</summary>
    /// <param name="path">The file.</param>
    /// <param name="device">The device; <see cref="Device.Default"/> when null.</param>
    public static Dictionary<string, Tensor> Load(string path, Device? device = null) =>
        Load(File.ReadAllBytes(path), device, path);

    /// <summary>Loads every tensor of an in-memory safetensors image.</summary>
    /// <param name="file">The file's bytes.</param>
    /// <param name="device">The device; <see cref="Device.Default"/> when null.</param>
    /// <param name="source">A name for messages.</param>
    public static Dictionary<string, Tensor> Load(byte[] file, Device? device = null, string source = "safetensors data")
    {
        ArgumentNullException.ThrowIfNull(file);
        var entries = Parse(file, source, out _);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var e in entries)
                result[e.Name] = Tensor.FromArray(Decode(file, e), e.Shape, device);
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        return result;
    }

    /// <summary>Reads the "__metadata__" entries of a file (empty when it has none).</summary>
    /// <param name="path">The file.</param>
    public static IReadOnlyDictionary<string, string> ReadMetadata(string path)
    {
        Parse(File.ReadAllBytes(path), path, out var meta);
        return meta;
    }

    private sealed record Entry(string Name, string Dtype, int[] Shape, long Begin, long End);

    private static int DtypeSize(string dtype) => dtype switch
    {
        "F32" => 4,
        "F64" => 8,
        "F16" or "BF16" => 2,
        _ => 0,
    };

    private static List<Entry> Parse(byte[] file, string source, out Dictionary<string, string> metadata)
    {
        SafetensorsFormatException Bad(string what) => new($"{source}: {what}");
        if (file.Length < 8) throw Bad($"{file.Length} bytes is too short: the file starts with an 8-byte header length.");
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(file);
        if (n > (ulong)MaxHeaderBytes || n > (ulong)(file.Length - 8))
            throw Bad($"the header length says {n} bytes, but the file has {file.Length - 8} after it (truncated or not safetensors).");
        long dataStart = 8 + (long)n;
        long dataLength = file.Length - dataStart;
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(file.AsMemory(8, (int)n));
        }
        catch (JsonException e)
        {
            throw Bad($"the header is not valid JSON ({e.Message}).");
        }
        using var _ = doc;
        if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Bad("the header is not a JSON object.");
        metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        var entries = new List<Entry>();
        foreach (var p in doc.RootElement.EnumerateObject())
        {
            if (p.Name == "__metadata__")
            {
                if (p.Value.ValueKind != JsonValueKind.Object) throw Bad("__metadata__ must be an object of strings.");
                foreach (var m in p.Value.EnumerateObject())
                {
                    if (m.Value.ValueKind != JsonValueKind.String) throw Bad($"__metadata__ entry '{m.Name}' is not a string.");
                    metadata[m.Name] = m.Value.GetString()!;
                }
                continue;
            }
            var v = p.Value;
            if (v.ValueKind != JsonValueKind.Object
                || !v.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String
                || !v.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array
                || !v.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
                throw Bad($"tensor '{p.Name}' needs \"dtype\", \"shape\" and two \"data_offsets\".");
            string dtype = dt.GetString()!;
            int size = DtypeSize(dtype);
            if (size == 0) throw Bad($"tensor '{p.Name}' has dtype {dtype}; F32, F64, F16 and BF16 are supported.");
            var shape = new List<int>();
            foreach (var d in sh.EnumerateArray())
            {
                if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt32(out int x) || x < 0)
                    throw Bad($"tensor '{p.Name}' has a shape entry that is not a non-negative integer.");
                shape.Add(x);
            }
            if (shape.Count > Tensor.MaxRank) throw Bad($"tensor '{p.Name}' has rank {shape.Count}; at most {Tensor.MaxRank} is supported.");
            if (!off[0].TryGetInt64(out long begin) || !off[1].TryGetInt64(out long end) || begin < 0 || end < begin)
                throw Bad($"tensor '{p.Name}' has data_offsets that are not 0 <= begin <= end.");
            long expected = Tensor.Elements(shape.ToArray()) * size;
            if (end - begin != expected)
                throw Bad($"tensor '{p.Name}' of shape {Tensor.ShapeText(shape.ToArray())} {dtype} needs {expected} bytes, but its offsets [{begin}, {end}] span {end - begin}.");
            if (end > dataLength)
                throw Bad($"tensor '{p.Name}' ends at byte {end} of the data, which has {dataLength} (truncated file?).");
            entries.Add(new Entry(p.Name, dtype, shape.ToArray(), begin, end));
        }
        // The buffer must be covered exactly: no overlaps, no holes, nothing after the last tensor.
        long at = 0;
        foreach (var e in entries.OrderBy(e => e.Begin).ThenBy(e => e.End))
        {
            if (e.Begin != at)
                throw Bad(e.Begin < at
                    ? $"tensor '{e.Name}' at [{e.Begin}, {e.End}] overlaps the previous tensor (which ends at {at})."
                    : $"bytes [{at}, {e.Begin}) of the data belong to no tensor.");
            at = e.End;
        }
        if (at != dataLength) throw Bad($"the data has {dataLength} bytes but the tensors cover {at}.");
        return entries;
    }

    private static float[] Decode(byte[] file, Entry e)
    {
        int n = (int)Tensor.Elements(e.Shape);
        var result = new float[n];
        var span = file.AsSpan((int)(FileDataStart(file) + e.Begin), (int)(e.End - e.Begin));
        for (int i = 0; i < n; i++)
        {
            result[i] = e.Dtype switch
            {
                "F32" => BinaryPrimitives.ReadSingleLittleEndian(span[(i * 4)..]),
                "F64" => (float)BinaryPrimitives.ReadDoubleLittleEndian(span[(i * 8)..]),
                "F16" => (float)BinaryPrimitives.ReadHalfLittleEndian(span[(i * 2)..]),
                _ => BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(span[(i * 2)..]) << 16),
            };
        }
        return result;
    }

    private static long FileDataStart(byte[] file) => 8 + (long)BinaryPrimitives.ReadUInt64LittleEndian(file);
}
