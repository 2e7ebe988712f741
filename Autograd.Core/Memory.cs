// Device memory: a caching allocator per device, reference-counted storage, and public counters.
//
// Why a cache: allocating and freeing device memory per op costs far more than the op on a GPU
// (cuMemFree also synchronises the device). Freed buffers go back to a free list keyed by a rounded
// size and are handed out again; Memory.EmptyCache() gives them back to the driver.
// Why finalizers: a tensor the user drops without Dispose (a temporary like `lr * w.Grad`) must not
// leak. Its finalizer returns the storage to the free list, which touches no device API, so it is
// safe on the finalizer thread; every launch is on one in-order stream, so a reused buffer is
// written only after earlier kernels that read it. Dispose, scopes and Backward release
// deterministically; the finalizer is the safety net.
// Why no GC.AddMemoryPressure: the allocator collects on a cache miss once enough was handed out
// (Memory.CollectThresholdBytes), which bounds the orphans; telling the GC about every buffer handed
// out of the cache made it collect far more often (the eager seed example on the CPU, 2000 steps,
// three alternating runs, 2026-11-27: 691-702 us/step with it, 587-608 without; peak RSS 65 -> 90 MB).
using ILGPU;
using ILGPU.Runtime;

namespace AutogradNet;

/// <summary>Counters and controls of the device memory the library holds.</summary>
public static class Memory
{
    /// <summary>Device buffers held by tensors now (shared views count once).</summary>
    public static long LiveBuffers => Device.AllCreated().Sum(d => d.Allocator.LiveBuffers);

    /// <summary>Bytes of the device buffers held by tensors now.</summary>
    public static long LiveBytes => Device.AllCreated().Sum(d => d.Allocator.LiveBytes);

    /// <summary>Buffers taken from the driver so far (cache hits excluded).</summary>
    public static long DeviceAllocations => Device.AllCreated().Sum(d => d.Allocator.DeviceAllocations);

    /// <summary>Bytes held in free lists of every device, ready for reuse.</summary>
    public static long CachedBytes => Device.AllCreated().Sum(d => d.Allocator.CachedBytes);

    /// <summary>Returns every cached (unused) buffer of every device to the driver.</summary>
    public static void EmptyCache()
    {
        foreach (var d in Device.AllCreated()) d.Allocator.EmptyCache();
    }

    /// <summary>
    /// Runs the garbage collector and finalizers so that tensors dropped without Dispose give their
    /// storage back now (it happens anyway, later). For tests and memory reports.
    /// </summary>
    public static void Collect()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
    }

    /// <summary>
    /// Bytes a device's cache may hand out between two garbage collections that it runs itself: past
    /// this, a cache miss first collects (so tensors dropped without Dispose come back) and looks
    /// again before asking the driver. Default 64 MiB.
    /// </summary>
    public static long CollectThresholdBytes { get; set; } = 64L << 20;

    /// <summary>
    /// When true, every buffer handed to a new tensor is first filled with NaN, so a kernel that fails
    /// to write an element shows it. For tests; it costs one launch per allocation.
    /// </summary>
    public static bool PoisonNewBuffers { get; set; }

}

/// <summary>
/// A tensor's hold on its storage, and the only part of a tensor with a finalizer. Why apart: an
/// object with a finalizer survives the collection that finds it dropped, with everything it
/// references. A dropped eager tensor references its autograd node, the node its saved inputs, and
/// so on: finalizing the tensor itself made each collection copy whole graphs of old steps (the eager
/// seed on the CPU: a collection every ~65 steps cost ~0.8 ms, ~12 us a step). This object holds the
/// storage and nothing else, so the tensor and its graph are freed in the collection that finds them.
/// </summary>
internal sealed class StorageLease(Storage storage)
{
    private Storage? _storage = storage;

    /// <summary>The storage, or null once released.</summary>
    internal Storage? Storage => Volatile.Read(ref _storage);

    /// <summary>Takes the storage away (once); the caller releases it. Null if already taken.</summary>
    internal Storage? Take()
    {
        var s = Interlocked.Exchange(ref _storage, null);
        if (s != null) GC.SuppressFinalize(this);
        return s;
    }

    /// <summary>Returns the storage of a tensor that was dropped without Dispose.</summary>
    ~StorageLease() => Interlocked.Exchange(ref _storage, null)?.Release();
}

/// <summary>A device buffer with a reference count: tensors and their reshaped views share one.</summary>
internal sealed class Storage
{
    private int _refs = 1;

    internal Storage(Allocator owner, MemoryBuffer1D<float, Stride1D.Dense> buffer, long capacity, long offset, long length)
    {
        Owner = owner;
        Buffer = buffer;
        Capacity = capacity;
        Length = length;
        View = buffer.View.SubView(offset, length);
    }

    internal Allocator Owner { get; }

    internal MemoryBuffer1D<float, Stride1D.Dense> Buffer { get; }

    /// <summary>The size class (floats) the buffer is cached under.</summary>
    internal long Capacity { get; }

    internal long Length { get; }

    internal ArrayView<float> View { get; }

    internal void AddRef() => Interlocked.Increment(ref _refs);

    internal void Release()
    {
        int r = Interlocked.Decrement(ref _refs);
        if (r == 0) Owner.Return(this);
        else if (r < 0) throw new InvalidOperationException("Storage released more often than referenced.");
    }
}

/// <summary>Free lists of device buffers for one device.</summary>
internal sealed class Allocator
{
    private readonly Device _device;
    private readonly Dictionary<long, Stack<MemoryBuffer1D<float, Stride1D.Dense>>> _free = new();
    // Buffers handed out stay reachable from here: ILGPU buffers have finalizers of their own, and a
    // dropped tensor and its buffer would otherwise be finalized in the same collection, in any order.
    private readonly HashSet<MemoryBuffer1D<float, Stride1D.Dense>> _taken = new(ReferenceEqualityComparer.Instance);
    private readonly object _lock = new();
    private long _cachedBytes;
    private long _bytesSinceCollect;

    // Tensors dropped without Dispose come back only when the GC finalizes them. On a cache miss, if
    // more than Memory.CollectThresholdBytes were handed out since the last collection, some of them
    // may be such orphans: collect and look again before asking the driver. The cache then grows only
    // with the live working set (plus at most that many bytes of orphans), and a loop whose cache
    // never runs dry never pays for a collection.

    internal Allocator(Device device) => _device = device;

    internal long CachedBytes { get { lock (_lock) return _cachedBytes; } }

    internal long LiveBuffers => Interlocked.Read(ref _liveBuffers);

    internal long LiveBytes => Interlocked.Read(ref _liveBytes);

    internal long DeviceAllocations => Interlocked.Read(ref _deviceAllocations);

    private long _liveBuffers, _liveBytes, _deviceAllocations;

    /// <summary>Element count actually allocated for a request: few size classes, little waste.</summary>
    internal static long RoundUp(long n)
    {
        if (n <= 64) return 64;
        // Four classes per power of two: waste at most 25%.
        long p = 1L << (63 - (int)long.LeadingZeroCount(n - 1));
        long step = Math.Max(1, p / 4);
        return (n + step - 1) / step * step;
    }

    internal Storage Take(long length)
    {
        long cap = RoundUp(length);
        long handedOut = Interlocked.Add(ref _bytesSinceCollect, cap * sizeof(float));
        var buf = TryTakeCached(cap);
        if (buf == null && handedOut > Memory.CollectThresholdBytes)
        {
            Interlocked.Exchange(ref _bytesSinceCollect, 0);
            // The orphans since the last collection are young: in generation 0, or in 1 when they were
            // alive (a step in flight) at the last collection, which promoted them. Collecting up to 1
            // finds both; a full collection cost ~1.4 ms here, every ~65 steps of the eager seed on the
            // CPU (~22 us a step). Only when that gave nothing back (orphans the GC's own collections
            // pushed further) is a full one worth it.
            buf = CollectOrphans(cap, generation: 1) ?? CollectOrphans(cap, generation: GC.MaxGeneration);
        }
        buf ??= AllocateFromDevice(cap, length * sizeof(float));
        lock (_lock) _taken.Add(buf);
        Interlocked.Increment(ref _liveBuffers);
        Interlocked.Add(ref _liveBytes, cap * sizeof(float));
        var storage = new Storage(this, buf, cap, AlignedStart(buf), length);
        if (Memory.PoisonNewBuffers) lock (_device.Sync) Kernels.Elementwise.Fill(_device.Host, buf.View, float.NaN);
        return storage;
    }

    // Collects up to `generation`, runs the finalizers of the tensors it found dropped (their storage
    // comes back to the free lists), then looks in the cache again.
    private MemoryBuffer1D<float, Stride1D.Dense>? CollectOrphans(long cap, int generation)
    {
        GC.Collect(generation, GCCollectionMode.Forced, blocking: true);
        GC.WaitForPendingFinalizers();
        return TryTakeCached(cap);
    }

    private MemoryBuffer1D<float, Stride1D.Dense>? TryTakeCached(long cap)
    {
        lock (_lock)
        {
            if (!_free.TryGetValue(cap, out var stack) || stack.Count == 0) return null;
            _cachedBytes -= cap * sizeof(float);
            return stack.Pop();
        }
    }

    /// <summary>Bytes taken from the driver and not yet given back (live and cached).</summary>
    internal long ReservedBytes => Interlocked.Read(ref _reservedBytes);

    private long _reservedBytes;

    // The CPU accelerator's buffers come from the C heap, which puts a large block 16 bytes past a
    // page: every 64-byte vector the host SGEMM and loops load from such a tensor then crossed two
    // cache lines, and on an Intel Xeon (Emerald Rapids, 2026-11-29) the seed's h = x w1 took 134 us on
    // one core instead of 86 with its B 64-byte aligned. So host buffers get 15 floats of slack and
    // tensors start at the first 64-byte boundary in them. A GPU's allocations are aligned already.
    private const int AlignFloats = 16;

    private long AlignSlack => _device.Kind == DeviceKind.Cpu ? AlignFloats - 1 : 0;

    // Where a tensor's floats start in a buffer: its first 64-byte boundary on the host, else 0.
    private long AlignedStart(MemoryBuffer1D<float, Stride1D.Dense> buffer)
    {
        if (AlignSlack == 0) return 0;
        ArrayView<float> view = buffer.View;
        long address = view.LoadEffectiveAddressAsPtr().ToInt64();
        return (AlignFloats - address / sizeof(float) % AlignFloats) % AlignFloats;
    }

    private MemoryBuffer1D<float, Stride1D.Dense> AllocateFromDevice(long cap, long requested)
    {
        long bytes = cap * sizeof(float), reserve = (cap + AlignSlack) * sizeof(float);
        Exception? driverError = null;
        for (int attempt = 0; attempt < 2; attempt++)
        {
            if (attempt == 1)
            {
                // Out of memory (or over the limit): give the cache and dropped tensors back, then retry once.
                EmptyCache();
                Memory.Collect();
                EmptyCache();
            }
            if (_device.MemoryLimitBytes is { } limit && ReservedBytes + reserve > limit) continue;
            try
            {
                var b = _device.Accelerator.Allocate1D<float>(cap + AlignSlack);
                Interlocked.Add(ref _reservedBytes, reserve);
                Interlocked.Increment(ref _deviceAllocations);
                return b;
            }
            catch (Exception e) when (e is not DeviceOutOfMemoryException)
            {
                driverError = e;
            }
        }
        string why = driverError != null ? $"the driver refused ({driverError.Message})"
            : $"it would pass the device's limit of {_device.MemoryLimitBytes:N0} bytes (Device.MemoryLimitBytes)";
        throw new DeviceOutOfMemoryException(
            $"Allocating {requested:N0} bytes ({bytes:N0} with the cache's size class) on {_device} failed: {why}. " +
            $"In use on this device: {LiveBytes:N0} bytes in {LiveBuffers} tensor buffers, {CachedBytes:N0} cached. " +
            "Dispose tensors you no longer need (or use Tensor.Scope()), use smaller shapes, or pick another device.", requested, driverError);
    }

    internal void Return(Storage s)
    {
        long cap = s.Capacity;
        lock (_lock)
        {
            _taken.Remove(s.Buffer);
            if (!_free.TryGetValue(cap, out var stack)) _free[cap] = stack = new();
            stack.Push(s.Buffer);
            _cachedBytes += cap * sizeof(float);
        }
        Interlocked.Decrement(ref _liveBuffers);
        Interlocked.Add(ref _liveBytes, -cap * sizeof(float));
    }

    internal void EmptyCache()
    {
        List<MemoryBuffer1D<float, Stride1D.Dense>> all;
        lock (_lock)
        {
            all = _free.Values.SelectMany(s => s).ToList();
            _free.Clear();
            _cachedBytes = 0;
        }
        if (all.Count > 0) _device.Synchronize();
        foreach (var b in all)
        {
            Interlocked.Add(ref _reservedBytes, -b.Length * sizeof(float));
            b.Dispose();
        }
    }
}
