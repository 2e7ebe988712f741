// HostFork, the fork-join under the host loops and the host SGEMM: every index runs exactly once,
// whatever the split, while helpers are awake or asleep, with several threads forking at once (one
// takes the helpers, the others Parallel.For), and a part's exception reaches the caller without
// breaking the next fork. A lost part, a part run twice or a deadlock fails here; the kernels' own
// tests check the bits of the jobs that run on it.
using AutogradNet.Kernels;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed class HostForkTests
{
    // Counts the visits of each index; throws in the parts that hold an index in `throwAt`.
    private readonly struct CountJob(int[] visits, int throwAt = -1, int throwAt2 = -1) : IHostJob
    {
        public void Run(int from, int to)
        {
            for (int i = from; i < to; i++)
            {
                Interlocked.Increment(ref visits[i]);
                if (i == throwAt || i == throwAt2) throw new InvalidOperationException($"part at {i}");
            }
        }
    }

    private static void ShouldVisitOnce(int[] visits, string because)
    {
        // The message is built only for the index that fails: built for each of 65,537 indices in 50
        // rounds, it allocated 3.4 GB, and the collections it caused cost seconds.
        int i = Array.FindIndex(visits, v => v != 1);
        if (i >= 0) visits[i].Should().Be(1, $"index {i} of {visits.Length}, {because}");
    }

    [Theory]
    [InlineData(1, 2)]
    [InlineData(3, 8)]
    [InlineData(7, 2)]
    [InlineData(33, 3)]
    [InlineData(130, 8)]
    [InlineData(65537, 2)]
    public void Every_index_runs_once(int count, int parts)
    {
        long before = HostFork.Forks;
        for (int round = 0; round < 50; round++)
        {
            var visits = new int[count];
            HostFork.Run(count, new CountJob(visits), parts);
            ShouldVisitOnce(visits, $"round {round}, {parts} parts");
        }
        // Other tests may fork at the same time and take the helpers, but not in all 50 rounds.
        HostFork.Forks.Should().BeGreaterThan(before, "the helpers' path ran");
    }

    [Fact]
    public void Helpers_asleep_still_run_every_part()
    {
        for (int round = 0; round < 5; round++)
        {
            Thread.Sleep(20);
            var visits = new int[1000];
            HostFork.Run(visits.Length, new CountJob(visits), 4);
            ShouldVisitOnce(visits, $"after a pause, round {round}");
        }
    }

    [Fact]
    public void Threads_forking_at_once_each_get_every_index_once()
    {
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        var threads = Enumerable.Range(0, 4).Select(t => new Thread(() =>
        {
            var rnd = new Random(t);
            for (int round = 0; round < 500; round++)
            {
                var visits = new int[1 + rnd.Next(300)];
                HostFork.Run(visits.Length, new CountJob(visits), 2 + rnd.Next(7));
                if (visits.Any(v => v != 1)) failures.Add($"thread {t}, round {round}: visits {string.Join(",", visits)}");
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        foreach (var t in threads)
            t.Join(TimeSpan.FromSeconds(60)).Should().BeTrue("a fork that never returns is a deadlock");
        failures.Should().BeEmpty();
    }

    [Fact]
    public void A_part_that_throws_reaches_the_caller_and_the_next_fork_works()
    {
        var visits = new int[100];
        var one = () => HostFork.Run(visits.Length, new CountJob(visits, throwAt: 90), 2);
        one.Should().Throw<InvalidOperationException>().WithMessage("part at 90");

        visits = new int[100];
        var two = () => HostFork.Run(visits.Length, new CountJob(visits, throwAt: 10, throwAt2: 90), 2);
        two.Should().Throw<AggregateException>().Which.InnerExceptions.Should().HaveCount(2);

        visits = new int[100];
        HostFork.Run(visits.Length, new CountJob(visits), 2);
        ShouldVisitOnce(visits, "after the throwing forks");
    }
}
