// The bench's resumable units (bench/Autograd.Bench/Units.cs) and gpu-check.sh's loop around them
// (scripts/bench-resume.sh). A GPU call is rare and short: a kernel that faults on the card, or a
// unit that never returns, must cost its own rows, not every row after it. These check the numbering,
// the skip, the stop and its line, the watchdog, the JSON that gathers the parts, and the script's
// restarts (against a stand-in for the bench that stops the way the bench does). The same for the
// CUDA suite's shards: the methods that failed only because an earlier test lost the context run
// again (scripts/test-shards.py rerun).
using System.Diagnostics;
using System.Text.Json;
using AutogradNet.Bench;
using AutogradNet.Kernels;
using FluentAssertions;
using Xunit;

namespace AutogradNet.Tests;

public sealed class BenchTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("autograd-bench-tests-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    // A Units whose stops are recorded instead of ending the test process.
    private sealed class Harness
    {
        public readonly StringWriter Output = new();
        public readonly List<int> Exits = [];
        public readonly List<Exception> Failures = [];
        public readonly ManualResetEventSlim Stopped = new();
        public int Saves;

        public Units Make(int from = 0, string? progress = null, double limit = 0, bool deviceWorks = true) =>
            new(from, progress, limit, () => deviceWorks, () => Interlocked.Increment(ref Saves), output: Output, exit: code =>
            {
                lock (Exits) Exits.Add(code);
                Stopped.Set();
            });
    }

    [Fact]
    public void Units_before_from_are_skipped_but_numbered_and_the_progress_file_names_the_one_running()
    {
        var h = new Harness();
        string progress = Path.Combine(_dir, "bench.at");
        var ran = new List<int>();
        var seen = new List<string>();
        using var units = h.Make(from: 2, progress: progress);
        for (int i = 0; i < 5; i++)
        {
            int unit = i;
            units.Run($"unit {unit}'s name", () =>
            {
                ran.Add(unit);
                seen.Add(File.ReadAllText(progress));
            }, h.Failures.Add);
        }
        ran.Should().Equal(2, 3, 4);
        seen.Should().Equal("2\tunit 2's name\n", "3\tunit 3's name\n", "4\tunit 4's name\n");
        units.Count.Should().Be(5);
        h.Exits.Should().BeEmpty();
    }

    [Fact]
    public void Under_headline_only_the_marked_units_run_and_the_others_keep_their_numbers()
    {
        var h = new Harness();
        var ran = new List<int>();
        using var units = new Units(0, null, 0, () => true, () => { }, output: h.Output, exit: h.Exits.Add, headlineOnly: true);
        for (int i = 0; i < 6; i++)
        {
            int unit = i;
            units.Run($"unit {unit}", () => ran.Add(unit), h.Failures.Add, headline: unit % 3 == 1);
        }
        ran.Should().Equal(1, 4);
        units.Count.Should().Be(6);
    }

    [Fact]
    public void A_unit_that_fails_on_a_working_device_is_reported_and_the_rest_run()
    {
        var h = new Harness();
        var ran = new List<int>();
        using var units = h.Make(deviceWorks: true);
        units.Run("a", () => ran.Add(0), h.Failures.Add);
        units.Run("b", () => throw new InvalidOperationException("wrong result"), h.Failures.Add);
        units.Run("c", () => ran.Add(2), h.Failures.Add);
        ran.Should().Equal(0, 2);
        h.Failures.Should().ContainSingle().Which.Message.Should().Be("wrong result");
        h.Exits.Should().BeEmpty();
        h.Saves.Should().Be(0);
    }

    [Fact]
    public void A_unit_that_leaves_the_device_unusable_stops_the_bench_saving_first_and_naming_the_next_unit()
    {
        var h = new Harness();
        using var units = h.Make(from: 3, deviceWorks: false);
        for (int i = 0; i < 5; i++)
            units.Run($"unit {i}", () => { if (units.Count == 5) throw new InvalidOperationException("an illegal memory access was encountered"); }, h.Failures.Add);
        h.Failures.Should().ContainSingle();
        h.Exits.Should().Equal(Units.DeviceLostExit);
        h.Saves.Should().Be(1);
        string text = h.Output.ToString();
        text.Should().Contain("STOPPED: unit 4 (unit 4) left the device unable to run a kernel.");
        text.Should().Contain($"{Units.ResumeMarker} 5");
    }

    [Fact]
    public void The_break_hook_stops_at_its_unit_as_a_broken_device_would_even_where_the_device_works()
    {
        var h = new Harness();
        var ran = new List<int>();
        using var units = new Units(0, null, 0, () => true, () => h.Saves++, breakAt: 1, output: h.Output, exit: h.Exits.Add);
        for (int i = 0; i < 3; i++)
        {
            int unit = i;
            units.Run($"unit {unit}", () => ran.Add(unit), e => h.Failures.Add(e));
        }
        ran.Should().Equal(0, 2); // the stand-in exit returns; the real one ends the process here
        h.Failures.Should().ContainSingle().Which.Message.Should().Contain("--test-break-at 1");
        h.Exits.Should().Equal(Units.DeviceLostExit);
        h.Output.ToString().Should().Contain($"{Units.ResumeMarker} 2");
    }

    [Fact]
    public void A_unit_past_its_limit_is_stopped_by_the_watchdog_naming_the_unit_after_it()
    {
        var h = new Harness();
        using var units = h.Make(limit: 0.5);
        units.Run("quick", () => { }, h.Failures.Add);
        bool released = false;
        // Blocks as a wait on a hung kernel would, until the watchdog has stopped the bench (20 s at most).
        units.Run("stuck", () => released = h.Stopped.Wait(TimeSpan.FromSeconds(20)), h.Failures.Add);
        released.Should().BeTrue("the watchdog ticks every second and the limit is half of one");
        h.Exits.Should().Equal(Units.OverranExit);
        h.Saves.Should().Be(1);
        h.Output.ToString().Should().Contain("STOPPED: unit 1 (stuck) ran past its limit of 0 s.").And.Contain($"{Units.ResumeMarker} 2");
    }

    [Fact]
    public void Units_refuse_a_negative_start_or_limit_naming_the_option()
    {
        var make = () => new Units(-1, null, 0, () => true, () => { });
        make.Should().Throw<ArgumentOutOfRangeException>().WithMessage("*--from*");
        make = () => new Units(0, null, -2, () => true, () => { });
        make.Should().Throw<ArgumentOutOfRangeException>().WithMessage("*--unit-limit*");
    }

    [Fact]
    public void The_bench_file_keeps_an_earlier_parts_rows_and_its_kernels_that_the_next_part_did_not_load_again()
    {
        string path = Path.Combine(_dir, "bench.json");
        var first = new KernelResource("MatMulWide16", "FirstOp", 127, 0, 33792, 2);
        var second = new KernelResource("MatMulWide16Async", "FirstOp", 127, 0, 50688, 2);
        File.WriteAllText(path, JsonSerializer.Serialize(new
        {
            device = "cuda",
            results = new[] { new Result("matmul 4096^3 NN", 3376.5, 40.7, null, "64 samples") },
            kernels = new[] { first, second },
        }));
        var earlier = BenchFile.Read(path);
        earlier.Results.Should().Equal(new Result("matmul 4096^3 NN", 3376.5, 40.7, null, "64 samples"));
        var reloaded = second with { Registers = 120 };
        var merged = earlier.KernelsWith([reloaded]).Select(e => e.Deserialize<KernelResource>()).ToList();
        merged.Should().Equal(first, reloaded);
    }

    // gpu-check.sh's loop, against a stand-in for the bench: from unit 0 it stops with the bench's line
    // (exit 3); from unit 2 it crashes inside unit 4 without one (exit 139, the progress file naming
    // unit 4); from unit 5 it finishes. The loop must start it from 0, 2 and 5, with a log each.
    [Fact]
    public void The_resume_script_starts_the_bench_again_after_each_part_that_stopped()
    {
        var (rc, output) = ResumeAStandIn($$"""
            echo "row from $from" >> "$json"
            case $from in
              0) printf '1\tunit 1\n' > "$progress"; echo "STOPPED: unit 1 broke it."; echo "{{Units.ResumeMarker}} 2"; exit 3;;
              2) printf '4\tunit 4\n' > "$progress"; exit 139;;
              5) printf '9\tunit 9\n' > "$progress"; echo "wrote it"; exit 0;;
              *) echo "unexpected --from $from"; exit 0;;
            esac
            """);
        rc.Should().Be(0, output);
        Froms().Should().Equal("0", "2", "5");
        File.Exists(Path.Combine(_dir, "bench.log")).Should().BeTrue();
        File.Exists(Path.Combine(_dir, "bench-from-2.log")).Should().BeTrue();
        File.Exists(Path.Combine(_dir, "bench-from-5.log")).Should().BeTrue();
        File.ReadAllLines(Path.Combine(_dir, "bench.json")).Should().Equal("row from 0", "row from 2", "row from 5");
        output.Should().Contain("ended (rc=139) in unit 4; going on from unit 5");
    }

    [Fact]
    public void The_resume_script_stops_where_a_part_names_no_later_unit()
    {
        var (rc, output) = ResumeAStandIn($"""echo "{Units.ResumeMarker} 0"; exit 3""");
        rc.Should().Be(0, output);
        output.Should().Contain("made no progress");
    }

    // A candidate kernel that faults while autotuning breaks the context in every unit that tunes its
    // shape: after 3 such parts the loop gives up with exit 3, and gpu-check.sh runs the rule's bench.
    [Fact]
    public void The_resume_script_gives_up_with_exit_3_after_the_device_was_lost_three_times()
    {
        var (rc, output) = ResumeAStandIn($"""echo "{Units.ResumeMarker} $(( from + 1 ))"; exit 3""");
        rc.Should().Be(3, output);
        Froms().Should().Equal("0", "1", "2");
        output.Should().Contain("the device was lost 3 times");
    }

    // Shard XML as xUnit writes it, out of order on purpose (the script orders by start time): a
    // wrong result, then a fault, then tests that failed for the lost context (ILGPU's text and the
    // CUDA graph's CUresult), one of them a later case of the faulting method, and a plain failure.
    [Fact]
    public void The_shard_rerun_lists_the_methods_that_failed_after_a_lost_context_but_not_the_one_that_lost_it()
    {
        string script = ShardsScript();
        string xml = ShardXml("tests-0.xml", """
            <test name="A.T.ok" result="Pass" start-rtf="2026-11-29T01:00:00" type="A.T" method="ok"/>
            <test name="A.T.bad(1)" result="Fail" start-rtf="2026-11-29T01:00:02" type="A.T" method="bad"><failure><message>CudaException : an illegal memory access was encountered</message></failure></test>
            <test name="A.T.wrong" result="Fail" start-rtf="2026-11-29T01:00:01" type="A.T" method="wrong"><failure><message>an illegal memory access was not expected; found 4</message></failure></test>
            <test name="A.U.later(1)" result="Fail" start-rtf="2026-11-29T01:00:03" type="A.U" method="later"><failure><message>CudaException : an illegal memory access was encountered</message></failure></test>
            <test name="A.U.later(2)" result="Fail" start-rtf="2026-11-29T01:00:04" type="A.U" method="later"><failure><message>CUDA graph: cuGraphLaunch failed with CUresult 700.</message></failure></test>
            <test name="A.T.bad(2)" result="Fail" start-rtf="2026-11-29T01:00:05" type="A.T" method="bad"><failure><message>an illegal memory access was encountered</message></failure></test>
            <test name="A.V.cpu" result="Fail" start-rtf="2026-11-29T01:00:06" type="A.V" method="cpu"><failure><message>Expected 1</message></failure></test>
            <test name="A.V.graph" result="Fail" start-rtf="2026-11-29T01:00:07" type="A.V" method="graph"><failure><message>failed with CUresult 719.</message></failure></test>
            """);
        string clean = ShardXml("tests-1.xml", """
            <test name="B.T.wrong" result="Fail" start-rtf="2026-11-29T01:00:01" type="B.T" method="wrong"><failure><message>Expected 3</message></failure></test>
            """);
        var (rc, output) = Run("python3", script, "rerun", xml, clean, Path.Combine(_dir, "tests-2.xml"));
        rc.Should().Be(0, output);
        output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.Contains("lost the CUDA context"))
            .Should().Equal("-method", "A.U.later", "-method", "A.V.graph");
        output.Should().Contain("A.T.bad lost the CUDA context");
    }

    // Runs scripts/bench-resume.sh over a stand-in bench: a bash script that takes the options the
    // loop adds (--from, --json, --progress, as $from, $json, $progress), records each --from in
    // froms.txt (Froms), then runs `body`.
    private (int Rc, string Output) ResumeAStandIn(string body)
    {
        string script = RepoFile("scripts/bench-resume.sh");
        string bench = Path.Combine(_dir, "bench.sh");
        File.WriteAllText(bench, $$"""
            #!/bin/bash
            while (( $# )); do case $1 in --from) from=$2; shift;; --progress) progress=$2; shift;; --json) json=$2; shift;; esac; shift; done
            echo "$from" >> '{{Path.Combine(_dir, "froms.txt")}}'
            {{body}}
            """.Replace("\r\n", "\n"));
        return Bash(script, _dir, "bench", "60", "--", "bash", bench);
    }

    private string[] Froms() => File.ReadAllLines(Path.Combine(_dir, "froms.txt"));

    // A GPU call leaves the [CpuOnly] methods out, so its times file would lose their entries and a
    // FULL_SUITE=1 call would deal them as 1 s each: --keep carries them over from the old file.
    [Fact]
    public void The_times_file_keeps_the_old_entries_of_the_methods_a_call_did_not_run()
    {
        string script = ShardsScript();
        string xml = ShardXml("tests-0.xml", """
            <test name="A.T.ran(1)" result="Pass" time="1.25" type="A.T" method="ran"/>
            <test name="A.T.ran(2)" result="Pass" time="0.5" type="A.T" method="ran"/>
            """);
        string old = Path.Combine(_dir, "old.tsv");
        File.WriteAllText(old, "# old\nA.T.ran\t9.00\nA.S.offline\t54.31\n");
        var (rc, output) = Run("python3", script, "times", "--keep", old, xml);
        rc.Should().Be(0, output);
        var entries = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(l => !l.StartsWith('#') && l.Contains('\t')).ToList();
        entries.Should().Equal("A.T.ran\t1.75", "A.S.offline\t54.31");
    }

    // scripts/test-shards.py, skipping where python3 is missing.
    private static string ShardsScript()
    {
        string script = RepoFile("scripts/test-shards.py");
        Assert.SkipUnless(Which("python3"), "no python3 on this machine (gpu-check.sh runs the script with it)");
        return script;
    }

    // A shard's xUnit XML with these <test> elements, in the test's folder.
    private string ShardXml(string name, string tests)
    {
        string path = Path.Combine(_dir, name);
        File.WriteAllText(path, $"<assemblies><assembly><collection>\n{tests}\n</collection></assembly></assemblies>\n");
        return path;
    }

    private static bool Which(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Any(d => File.Exists(Path.Combine(d, program)));

    // A file of the repository, found upward from the test assembly (the build's bin folder, or
    // .gpu/Autograd.Tests on a GPU machine) or from the working directory.
    private static string RepoFile(string relative)
    {
        Assert.SkipWhen(OperatingSystem.IsWindows(), "the GPU machines' scripts are bash");
        foreach (var start in new[] { AppContext.BaseDirectory, Directory.GetCurrentDirectory() })
            for (var dir = new DirectoryInfo(start); dir != null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, relative))) return Path.Combine(dir.FullName, relative);
        Assert.Skip($"{relative} is not above {AppContext.BaseDirectory} or the working directory (a test assembly away from its repository)");
        return "";
    }

    private static (int Rc, string Output) Bash(string script, params string[] args) => Run("bash", [script, .. args]);

    private static (int Rc, string Output) Run(string program, params string[] args)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var a in args) start.ArgumentList.Add(a);
        start.Environment.Remove("DEADLINE");
        using var p = Process.Start(start)!;
        var stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit(60_000).Should().BeTrue("the script's parts each end at once");
        return (p.ExitCode, stdout + stderr.Result);
    }

    // A persistent variant the step refused (on the "cpu" device its host loops are not kernels; on an
    // H200 in runs 13-14, the tuner's Tiled 8x8) timed the step's launches: the row's name says so, so
    // that ratios.py does not take it for the persistent kernel.
    [Fact]
    public void A_persistent_row_the_step_refused_says_it_timed_the_launches()
    {
        var r = Workloads.SeedCompiled(AutogradNet.Device.Cpu, 10, cudaGraphs: false, stepsPerRun: 5, variant: "persistent kernel");
        r.Name.Should().Be("seed step compiled, Run(steps: 5), persistent kernel (refused: its launches)");
        r.Check.Should().Contain("5 launches/step");
    }
}
