// The group shapes of the tiled SGEMM (MatMulKernels.TiledKernel), as structs it is specialised on.
//
// Why structs: ILGPU needs shared-memory sizes and the kernel's strides as constants, and a generic
// kernel closed over a struct whose properties return literals gets them as constants (the getters
// are inlined), exactly like the elementwise op structs. One kernel source then serves a GPU's
// 16x16 groups and the CPU accelerator's groups of 2, and the host picks the largest shape the
// accelerator's limits allow (MatMulKernels.TiledGroupFor).
//
// A group of ThreadsX x ThreadsY threads computes a (4 ThreadsY) x (4 ThreadsX) tile of C, 4x4 per
// thread, rows strided by ThreadsY and columns by ThreadsX so the shared reads of neighbouring threads
// are neighbouring words.
namespace AutogradNet.Kernels;

/// <summary>The thread-group shape a tiled SGEMM kernel is specialised on.</summary>
public interface ITileShape
{
    /// <summary>Threads along a row of C (the tile has 4 times as many columns).</summary>
    int ThreadsX { get; }

    /// <summary>Threads along a column of C (the tile has 4 times as many rows).</summary>
    int ThreadsY { get; }
}

/// <summary>16x16 threads, 64x64 tiles: the GPU shape.</summary>
public readonly struct Tile16x16 : ITileShape
{
    /// <inheritdoc />
    public int ThreadsX => 16;

    /// <inheritdoc />
    public int ThreadsY => 16;
}

/// <summary>8x8 threads, 32x32 tiles.</summary>
public readonly struct Tile8x8 : ITileShape
{
    /// <inheritdoc />
    public int ThreadsX => 8;

    /// <inheritdoc />
    public int ThreadsY => 8;
}

/// <summary>4x4 threads, 16x16 tiles (the default CPU accelerator allows groups of 16).</summary>
public readonly struct Tile4x4 : ITileShape
{
    /// <inheritdoc />
    public int ThreadsX => 4;

    /// <inheritdoc />
    public int ThreadsY => 4;
}

/// <summary>2x2 threads, 8x8 tiles.</summary>
public readonly struct Tile2x2 : ITileShape
{
    /// <inheritdoc />
    public int ThreadsX => 2;

    /// <inheritdoc />
    public int ThreadsY => 2;
}

/// <summary>2x1 threads, 4x8 tiles (this library's CPU accelerator runs groups of 2).</summary>
public readonly struct Tile2x1 : ITileShape
{
    /// <inheritdoc />
    public int ThreadsX => 2;

    /// <inheritdoc />
    public int ThreadsY => 1;
}

/// <summary>One thread, 4x4 tiles: runs on any accelerator.</summary>
public readonly struct Tile1x1 : ITileShape
{
    /// <inheritdoc />
    public int ThreadsX => 1;

    /// <inheritdoc />
    public int ThreadsY => 1;
}
