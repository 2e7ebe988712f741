// Fork-join for the host loops and the host SGEMM on the CPU accelerator: one thread per extra core,
// each woken by a semaphore for its part, and the caller runs part 0 and then every part no helper
// has begun, so a helper that is slow to wake costs at most the serial time. Parallel.For did the
// same through the thread pool's task machinery. Measured on the 2-core machine (2026-11-27, three
// alternating runs, Parallel.For -> this): the seed's forward product 64x1000x100 32.6-33.9 ->
// 30.5-30.8 us and its dW1 (1000x64x100 TN) 38.0-38.6 -> 36.2-36.4 (best of 7 x 300 calls); the
// compiled seed step 90.6-91.4 -> 85.5-86.6 us (best of 6 x 2000 steps); in the eager step the SGD
// update of 100K floats 19.7-20.4 -> 15.6-15.9 us and the zeroing 4.9-5.2 -> 2.9 (mean of 4000
// steps). Helpers that spun after a job (50 to 3000 us) gained nothing on the products and slowed
// the eager step by up to 15%: they took the core the garbage collector and the finalizer need.
// Only one fork runs at a time: a caller that finds it taken (another thread, or a nested split) gets
// Parallel.For. Never used on a GPU.
using System.Runtime.ExceptionServices;

namespace AutogradNet.Kernels;

/// <summary>Runs a host job's parts on the calling thread and on helper threads, one per extra core.</summary>
internal static class HostFork
{
    /// <summary>Most parts a fork takes (the caller and 7 helpers); wider splits take Parallel.For.</summary>
    public const int MaxParts = 8;

    private static readonly Helper[] Helpers = new Helper[MaxParts - 1];
    private static int _taken;
    private static long _generation;

    /// <summary>Forks that ran on the helpers (tests: the path was taken).</summary>
    internal static long Forks;

    /// <summary>
    /// Runs job over [0, count) in `parts` contiguous ranges, part p being
    /// [count p / parts, count (p + 1) / parts); returns when all are done. An exception in a part is
    /// rethrown here (several as an AggregateException), after every part has finished.
    /// </summary>
    public static void Run<TJob>(int count, TJob job, int parts) where TJob : struct, IHostJob
    {
        if (parts <= 1)
        {
            job.Run(0, count);
            return;
        }
        if (parts > MaxParts || Interlocked.CompareExchange(ref _taken, 1, 0) != 0)
        {
            try
            {
                Parallel.For(0, parts, p => job.Run(From(count, p, parts), From(count, p + 1, parts)));
            }
            catch (AggregateException e) when (e.InnerExceptions.Count == 1)
            {
                // The same exception whichever way the fork ran.
                ExceptionDispatchInfo.Throw(e.InnerExceptions[0]);
            }
            return;
        }
        // The boxed job is cached per job type: only the holder of _taken sets it.
        var fork = Fork<TJob>.Shared ??= new Fork<TJob>();
        try
        {
            long gen = fork.Open(job, count, parts);
            for (int h = 1; h < parts; h++) (Helpers[h - 1] ??= new Helper()).Post(fork, h, gen);
            // Part 0 here, then every part no helper has begun: a helper that is asleep, or that
            // the OS has not scheduled, costs at most the serial time, as with Parallel.For.
            fork.Execute(0);
            for (int p = 1; p < parts; p++) fork.TryRun(p, gen);
            fork.WaitAll(gen);
            Interlocked.Increment(ref Forks);
            fork.ThrowErrors();
        }
        finally
        {
            fork.Close();
            Volatile.Write(ref _taken, 0);
        }
    }

    private static int From(int count, int p, int parts) => (int)((long)count * p / parts);

    /// <summary>
    /// One fork's parts. State[p] is gen * 4 + (0 open, 1 running, 2 done): a part is claimed by
    /// CompareExchange from open in its own generation, so a helper that wakes late for an old fork
    /// claims nothing in a newer one.
    /// </summary>
    private abstract class ForkBase
    {
        protected readonly long[] State = new long[MaxParts];
        protected readonly Exception?[] Errors = new Exception?[MaxParts];
        protected int Parts;

        protected long NextGeneration(int parts)
        {
            Parts = parts;
            // One count for every fork of every job type, so a generation names one fork.
            long gen = ++_generation;
            for (int p = 0; p < parts; p++)
            {
                Errors[p] = null;
                Volatile.Write(ref State[p], gen * 4);
            }
            return gen;
        }

        /// <summary>Runs part p if it is still open in generation gen.</summary>
        public void TryRun(int p, long gen)
        {
            if (Interlocked.CompareExchange(ref State[p], gen * 4 + 1, gen * 4) != gen * 4) return;
            Execute(p);
            // Only if the part is still this fork's: a fork that failed before its wait (a helper
            // thread that could not start) may have been reopened by the next one meanwhile.
            Interlocked.CompareExchange(ref State[p], gen * 4 + 2, gen * 4 + 1);
        }

        /// <summary>Runs part p, keeping its exception.</summary>
        public void Execute(int p)
        {
            try
            {
                RunPart(p);
            }
            catch (Exception e)
            {
                Errors[p] = e;
            }
        }

        /// <summary>Waits until every part but 0 is done (each was claimed by now).</summary>
        public void WaitAll(long gen)
        {
            var spin = new SpinWait();
            for (int p = 1; p < Parts; p++)
                while (Volatile.Read(ref State[p]) != gen * 4 + 2) spin.SpinOnce(sleep1Threshold: -1);
        }

        public void ThrowErrors()
        {
            List<Exception>? errors = null;
            for (int p = 0; p < Parts; p++)
                if (Errors[p] is { } e) (errors ??= []).Add(e);
            if (errors is [var one]) ExceptionDispatchInfo.Throw(one);
            if (errors != null) throw new AggregateException(errors);
        }

        protected abstract void RunPart(int p);
    }

    private sealed class Fork<TJob> : ForkBase where TJob : struct, IHostJob
    {
        public static Fork<TJob>? Shared;
        private TJob _job;
        private int _count;

        public long Open(TJob job, int count, int parts)
        {
            _job = job;
            _count = count;
            return NextGeneration(parts);
        }

        // Drops the job (it may hold references) once every part is done.
        public void Close() => _job = default;

        protected override void RunPart(int p) => _job.Run(From(_count, p, Parts), From(_count, p + 1, Parts));
    }

    // One helper thread, woken once per post. It runs the latest post's part if that part is still
    // open: fields of a later post may mix in, and then the generation check claims nothing, and
    // the holder runs the part itself.
    private sealed class Helper
    {
        private readonly SemaphoreSlim _wake = new(0);
        private ForkBase? _fork;
        private int _part;
        private long _gen;

        public Helper()
        {
            new Thread(Loop) { IsBackground = true, Name = "Autograd host fork" }.Start();
        }

        public void Post(ForkBase fork, int part, long gen)
        {
            _fork = fork;
            _part = part;
            Volatile.Write(ref _gen, gen);
            _wake.Release();
        }

        private void Loop()
        {
            while (true)
            {
                _wake.Wait();
                long gen = Volatile.Read(ref _gen);
                _fork!.TryRun(_part, gen);
            }
        }
    }
}
