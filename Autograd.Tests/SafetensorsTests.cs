// safetensors: round trip, a file built byte by byte from the format's specification, and refusal
// of truncated or inconsistent files with nothing loaded.
using System.Buffers.Binary;
using System.Text;
using AutogradNet.IO;
using AutogradNet.Tests.Support;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed class SafetensorsTests : IClassFixture<SimulatorsReleased>
{
    private static byte[] Build(string header, byte[] data)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var file = new byte[8 + h.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)h.Length);
        h.CopyTo(file, 8);
        data.CopyTo(file, 8 + h.Length);
        return file;
    }

    private static byte[] F32(params float[] v)
    {
        var b = new byte[v.Length * 4];
        for (int i = 0; i < v.Length; i++) BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(i * 4), v[i]);
        return b;
    }

    [Fact]
    public void Round_trip_keeps_names_shapes_values_and_metadata()
    {
        var path = Path.Combine(Path.GetTempPath(), $"autograd-{Guid.NewGuid():N}.safetensors");
        try
        {
            var w1 = TestData.Tensor([7, 33], 1);
            var b = TestData.Tensor([33], 2);
            var s = Tensor.Scalar(3.5f, TestData.Device);
            Safetensors.Save(path, new Dictionary<string, Tensor> { ["layer.w"] = w1, ["layer.b"] = b, ["scale"] = s },
                new Dictionary<string, string> { ["format"] = "pt" });
            var loaded = Safetensors.Load(path, TestData.Device);
            loaded.Keys.Should().BeEquivalentTo("layer.w", "layer.b", "scale");
            loaded["layer.w"].Shape.Should().Equal(7, 33);
            loaded["layer.w"].ToArray().Should().Equal(w1.ToArray());
            loaded["layer.b"].ToArray().Should().Equal(b.ToArray());
            loaded["scale"].Shape.Should().BeEmpty();
            loaded["scale"].Item().Should().Be(3.5f);
            Safetensors.ReadMetadata(path).Should().Contain("format", "pt");
            var bytes = File.ReadAllBytes(path);
            ((8 + (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes)) % 8).Should().Be(0, "the data starts 8-byte aligned");
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_file_built_byte_by_byte_from_the_specification_loads()
    {
        // Two tensors, the second first in the data, plus an F16 and a BF16 one.
        var data = new List<byte>();
        data.AddRange(F32(10, 20, 30));                          // b: [0, 12)
        data.AddRange(F32(1, 2, 3, 4, 5, 6));                    // a: [12, 36)
        data.AddRange([0x00, 0x3C, 0x00, 0xC0]);                 // h: F16 1.0, -2.0 -> [36, 40)
        data.AddRange([0x80, 0x3F, 0x40, 0x40]);                 // z: BF16 1.0, 3.0 -> [40, 44)
        string header = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[12,36]}," +
                        "\"b\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]}," +
                        "\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[36,40]}," +
                        "\"z\":{\"dtype\":\"BF16\",\"shape\":[2,1],\"data_offsets\":[40,44]}," +
                        "\"__metadata__\":{\"source\":\"hand-made\"}}";
        var t = Safetensors.Load(Build(header, data.ToArray()), TestData.Device);
        t["a"].Shape.Should().Equal(2, 3);
        t["a"].ToArray().Should().Equal(1, 2, 3, 4, 5, 6);
        t["b"].ToArray().Should().Equal(10, 20, 30);
        t["h"].ToArray().Should().Equal(1f, -2f);
        t["z"].Shape.Should().Equal(2, 1);
        t["z"].ToArray().Should().Equal(1f, 3f);
    }

    public static TheoryData<string, byte[], string> BadFiles()
    {
        var ok = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
        var full = Build(ok, F32(1, 2));
        return new TheoryData<string, byte[], string>
        {
            { "short", [1, 2, 3], "*too short*" },
            { "truncated header", full[..20], "*header length says*" },
            { "truncated data", full[..^4], "*ends at byte 8 of the data, which has 4*" },
            { "not json", Build("{nope", F32(1, 2)), "*not valid JSON*" },
            { "shape vs offsets", Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", F32(1, 2)), "*needs 12 bytes*span 8*" },
            { "overlap", Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", F32(1, 2)), "*overlaps*" },
            { "hole", Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", F32(1, 2)), "*belong to no tensor*" },
            { "trailing", Build(ok, F32(1, 2, 3)), "*has 12 bytes but the tensors cover 8*" },
            { "dtype", Build("{\"a\":{\"dtype\":\"I64\",\"shape\":[1],\"data_offsets\":[0,8]}}", F32(1, 2)), "*dtype I64*" },
            { "missing field", Build("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", F32(1, 2)), "*needs \"dtype\", \"shape\" and two \"data_offsets\"*" },
        };
    }

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void Bad_files_are_refused_and_nothing_is_loaded(string what, byte[] file, string message)
    {
        // A device no other test uses, so no tensor of it awaits a finalizer and its count moves only
        // with this test's loads: no garbage collection first (with the suite's heap, ~2 s a case).
        var dev = Device.CpuSimulator(2, 1, 11);
        long before = dev.LiveBuffers;
        var act = () => Safetensors.Load(file, dev, what);
        act.Should().Throw<SafetensorsFormatException>().WithMessage($"{what}: {message}");
        dev.LiveBuffers.Should().Be(before);
    }
}
