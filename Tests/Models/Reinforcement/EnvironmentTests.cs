using System.Text.Json;
using AttnCore.Models.Reinforcement;
using NUnit.Framework;

namespace AttnCore.Tests.Models.Reinforcement;

[TestFixture, Category("Models")]
public class CartPoleTests
{
    static JsonElement Cases() =>
        JsonDocument.Parse(File.ReadAllText(Path.Combine(TestContext.CurrentContext.TestDirectory, "Fixtures", "cartpole_trajectory.json"))).RootElement.GetProperty("cases");

    /// <summary>
    /// The trajectories of Tests/Fixtures/make_cartpole_trajectory.py (Gymnasium's CartPole-v1 equations transcribed in
    /// Python, float64): every state bit for bit, the float32 observation, the reward and both end flags, through a
    /// fall of the pole, a run off the track and a balanced episode truncated at 500 steps.
    /// </summary>
    [Test]
    public void CartPole_replays_the_Gymnasium_trajectories_exactly()
    {
        foreach (var c in Cases().EnumerateArray())
        {
            string name = c.GetProperty("name").GetString()!;
            var s0 = c.GetProperty("start").EnumerateArray().Select(v => v.GetDouble()).ToArray();
            var env = new CartPole();
            env.SetState(s0[0], s0[1], s0[2], s0[3]);
            var obs = new float[4];
            var steps = c.GetProperty("steps").EnumerateArray().ToArray();
            for (int t = 0; t < steps.Length; t++)
            {
                var s = steps[t];
                var r = env.Step(s.GetProperty("action").GetInt32(), obs);
                var want = s.GetProperty("state").EnumerateArray().Select(v => v.GetDouble()).ToArray();
                Assert.That(env.State.ToArray(), Is.EqualTo(want), $"{name} step {t + 1}: state");
                Assert.That(obs, Is.EqualTo(s.GetProperty("observation").EnumerateArray().Select(v => (float)v.GetDouble()).ToArray()), $"{name} step {t + 1}: observation");
                Assert.That(r.Reward, Is.EqualTo(s.GetProperty("reward").GetDouble()), name);
                Assert.That(r.Terminated, Is.EqualTo(s.GetProperty("terminated").GetBoolean()), $"{name} step {t + 1}: terminated");
                Assert.That(r.Truncated, Is.EqualTo(s.GetProperty("truncated").GetBoolean()), $"{name} step {t + 1}: truncated");
            }
        }
    }

    /// <summary>The first step from a chosen state, with the equations of motion written out here by hand in float64.</summary>
    [Test]
    public void CartPole_first_step_matches_the_equations_of_motion_written_out()
    {
        double x = 0.01, xd = -0.02, th = 0.03, thd = 0.04;
        // F = +10 (action 1); m_p l = 0.05; M = 1.1
        double temp = (10 + 0.05 * thd * thd * Math.Sin(th)) / 1.1;
        double thacc = (9.8 * Math.Sin(th) - Math.Cos(th) * temp) / (0.5 * (4.0 / 3.0 - 0.1 * Math.Cos(th) * Math.Cos(th) / 1.1));
        double xacc = temp - 0.05 * thacc * Math.Cos(th) / 1.1;
        double[] want = [x + 0.02 * xd, xd + 0.02 * xacc, th + 0.02 * thd, thd + 0.02 * thacc];
        var env = new CartPole();
        env.SetState(x, xd, th, thd);
        var obs = new float[4];
        var r = env.Step(1, obs);
        Assert.That(env.State.ToArray(), Is.EqualTo(want).Within(1e-15));
        Assert.That(r, Is.EqualTo(new StepResult(1.0, false, false)));
        // Pushing right accelerates the cart right and tips the pole left.
        Assert.That(want[1], Is.GreaterThan(xd)); Assert.That(want[3], Is.LessThan(thd));
    }

    [Test]
    public void CartPole_terminates_just_past_the_thresholds_and_not_at_them()
    {
        var obs = new float[4];
        var env = new CartPole();
        // x moves by tau·ẋ = 0.02·1 in one step: from 2.39 it reaches 2.41 (> 2.4), from 2.37 it reaches 2.39.
        env.SetState(2.39, 1.0, 0, 0);
        Assert.That(env.Step(1, obs).Terminated, Is.True);
        env.SetState(2.37, 1.0, 0, 0);
        Assert.That(env.Step(1, obs).Terminated, Is.False);
        env.SetState(-2.39, -1.0, 0, 0);
        Assert.That(env.Step(0, obs).Terminated, Is.True);
        double limit = 12 * 2 * Math.PI / 360;
        env.SetState(0, 0, limit - 0.001, 0.1);   // θ += 0.002: past 12°
        Assert.That(env.Step(1, obs).Terminated, Is.True);
        env.SetState(0, 0, -(limit - 0.003), -0.1);
        Assert.That(env.Step(0, obs).Terminated, Is.False);
        Assert.Throws<InvalidOperationException>(() => { env.SetState(2.39, 1.0, 0, 0); env.Step(1, obs); env.Step(1, obs); }, "stepping a terminated episode");
    }

    [Test]
    public void CartPole_truncates_at_the_time_limit_and_counts_from_the_reset()
    {
        var env = new CartPole(maxEpisodeSteps: 3);
        var obs = new float[4];
        env.Reset(5, obs);
        Assert.That(env.Step(1, obs).Truncated, Is.False);
        Assert.That(env.Step(0, obs).Truncated, Is.False);
        var last = env.Step(1, obs);
        Assert.That(last.Truncated && !last.Terminated && last.Reward == 1.0, Is.True);
        env.Reset(null, obs);
        Assert.That(env.Step(1, obs).Truncated, Is.False, "a reset restarts the count");
    }

    [Test]
    public void CartPole_reset_draws_each_variable_in_the_open_range_and_a_seed_repeats_it()
    {
        var env = new CartPole();
        var a = new float[4]; var b = new float[4];
        var seen = new List<double>();
        for (ulong seed = 0; seed < 200; seed++)
        {
            env.Reset(seed, a);
            seen.AddRange(env.State.ToArray());
            Assert.That(a, Is.EqualTo(env.State.ToArray().Select(v => (float)v).ToArray()));
        }
        Assert.That(seen.Min(), Is.GreaterThanOrEqualTo(-0.05)); Assert.That(seen.Max(), Is.LessThan(0.05));
        Assert.That(seen.Min(), Is.LessThan(-0.045)); Assert.That(seen.Max(), Is.GreaterThan(0.045));
        env.Reset(42, a); env.Reset(null, b);
        var again = new CartPole(); var a2 = new float[4]; var b2 = new float[4];
        again.Reset(42, a2); again.Reset(null, b2);
        Assert.That(a2, Is.EqualTo(a)); Assert.That(b2, Is.EqualTo(b));
        Assert.That(b, Is.Not.EqualTo(a), "an unseeded reset continues the stream");
    }

    [Test]
    public void StatelessCartPole_observes_position_and_angle_only_with_the_same_dynamics()
    {
        var full = new CartPole(); var stateless = new StatelessCartPole();
        var fo = new float[4]; var so = new float[2];
        full.Reset(7, fo); stateless.Reset(7, so);
        Assert.That(stateless.ObservationSpace.Size, Is.EqualTo(2));
        for (int t = 0; t < 20; t++)
        {
            Assert.That(so, Is.EqualTo(new[] { fo[0], fo[2] }), $"step {t}");
            var a = t % 3 == 0 ? 0 : 1;
            var rf = full.Step(a, fo); var rs = stateless.Step(a, so);
            Assert.That(rs, Is.EqualTo(rf));
            if (rf.Done) break;
        }
    }

    [Test]
    public void Bad_actions_and_observation_buffers_name_the_environment_and_the_sizes()
    {
        var env = new CartPole();
        var obs = new float[4];
        var e1 = Assert.Throws<InvalidOperationException>(() => env.Step(0, obs))!;
        Assert.That(e1.Message, Does.Contain("cartpole").And.Contain("Reset"));
        env.Reset(1, obs);
        var e2 = Assert.Throws<ArgumentOutOfRangeException>(() => env.Step(2, obs))!;
        Assert.That(e2.Message, Does.Contain("action 2").And.Contain("0..1"));
        var e3 = Assert.Throws<ArgumentException>(() => env.Step(0, new float[3]))!;
        Assert.That(e3.Message, Does.Contain("3 floats").And.Contain("4"));
        Assert.Throws<ArgumentOutOfRangeException>(() => new CartPole(0));
    }
}

[TestFixture, Category("Models")]
public class ProofOfMemoryTests
{
    /// <summary>
    /// CleanRL's rules played out: the goals are shown in the reset observation and for two frozen steps, then hidden;
    /// moves cost 0.1 and reaching an end pays ±1.6.
    /// </summary>
    [Test]
    public void Goals_are_shown_for_three_observations_then_hidden_and_the_right_end_pays()
    {
        for (ulong seed = 0; seed < 40; seed++)
        {
            var env = new ProofOfMemory();
            var obs = new float[3];
            env.Reset(seed, obs);
            int side = env.RewardingSide, start = env.Cell;
            Assert.That(start, Is.InRange(-2, 2));
            Assert.That(obs, Is.EqualTo(new[] { (float)-side, (float)Math.Round(start * 0.2, 2), (float)side }));
            for (int f = 0; f < 2; f++)
            {
                var r = env.Step(f % 2, obs);   // frozen: the action is ignored
                Assert.That(r, Is.EqualTo(new StepResult(0, false, false)));
                Assert.That(env.Cell, Is.EqualTo(start));
                Assert.That(obs[0], Is.EqualTo(-side)); Assert.That(obs[2], Is.EqualTo(side));
            }
            // walk to the rewarding end
            int action = side > 0 ? 1 : 0, moves = 5 - side * start;
            double total = 0;
            for (int m = 1; m <= moves; m++)
            {
                var r = env.Step(action, obs);
                Assert.That(obs[0], Is.EqualTo(0f)); Assert.That(obs[2], Is.EqualTo(0f));
                Assert.That(obs[1], Is.EqualTo((float)Math.Round(env.Cell * 0.2, 2)));
                total += r.Reward;
                Assert.That(r.Terminated, Is.EqualTo(m == moves), $"seed {seed} move {m}");
                Assert.That(r.Reward, Is.EqualTo(m == moves ? 1.6 : -0.1).Within(1e-12));
            }
            Assert.That(total, Is.EqualTo(1.6 - 0.1 * (moves - 1)).Within(1e-12));
            Assert.That(total, Is.GreaterThan(0));
        }
    }

    [Test]
    public void The_wrong_end_costs_the_goal_reward_and_dithering_is_truncated_at_16_steps()
    {
        var env = new ProofOfMemory();
        var obs = new float[3];
        env.Reset(3, obs);
        int side = env.RewardingSide;
        env.Step(0, obs); env.Step(0, obs);
        StepResult r;
        do r = env.Step(side > 0 ? 0 : 1, obs); while (!r.Done);
        Assert.That(r.Terminated && r.Reward == -1.6, Is.True);

        env.Reset(4, obs);
        int steps = 0;
        do { r = env.Step(steps % 2, obs); steps++; } while (!r.Done);
        Assert.That(steps, Is.EqualTo(16));
        Assert.That(r.Truncated && !r.Terminated, Is.True);
        Assert.That(obs[1], Is.EqualTo((float)Math.Round(env.Cell * 0.2, 2)));
    }

    [Test]
    public void Seeds_cover_both_sides_and_every_start_and_repeat_exactly()
    {
        var sides = new HashSet<int>(); var starts = new HashSet<int>();
        var env = new ProofOfMemory(); var obs = new float[3];
        for (ulong s = 0; s < 100; s++) { env.Reset(s, obs); sides.Add(env.RewardingSide); starts.Add(env.Cell); }
        Assert.That(sides, Is.EquivalentTo(new[] { -1, 1 }));
        Assert.That(starts, Is.EquivalentTo(new[] { -2, -1, 0, 1, 2 }));
        var a = new ProofOfMemory(); var b = new ProofOfMemory(); var oa = new float[3]; var ob = new float[3];
        for (int e = 0; e < 10; e++) { a.Reset(e == 0 ? 9UL : null, oa); b.Reset(e == 0 ? 9UL : null, ob); Assert.That(oa, Is.EqualTo(ob)); }
    }
}

[TestFixture, Category("Models")]
public class VectorEnvironmentTests
{
    /// <summary>
    /// Same-step auto-reset: an ended episode's last observation goes to FinalObservations, Observations holds the new
    /// episode's first, the episode is recorded with its return and length, and environment i was seeded seed + i.
    /// Checked against single environments driven by hand.
    /// </summary>
    [Test]
    public void Auto_reset_keeps_the_final_observation_and_records_the_episode()
    {
        var vec = new VectorEnvironment([new CartPole(maxEpisodeSteps: 7), new CartPole(maxEpisodeSteps: 7)]);
        vec.Reset(10);
        var refs = new[] { new CartPole(7), new CartPole(7) };
        var refObs = new[] { new float[4], new float[4] };
        refs[0].Reset(10, refObs[0]); refs[1].Reset(11, refObs[1]);
        Assert.That(vec.Row(vec.Observations, 0).ToArray(), Is.EqualTo(refObs[0]));
        Assert.That(vec.Row(vec.Observations, 1).ToArray(), Is.EqualTo(refObs[1]));
        int[] actions = [1, 0];
        int episodes = 0;
        for (int t = 0; t < 20; t++)
        {
            vec.Step(actions);
            for (int i = 0; i < 2; i++)
            {
                var r = refs[i].Step(actions[i], refObs[i]);
                Assert.That(vec.Rewards[i], Is.EqualTo(r.Reward));
                Assert.That(vec.Terminated[i], Is.EqualTo(r.Terminated)); Assert.That(vec.Truncated[i], Is.EqualTo(r.Truncated));
                if (r.Done)
                {
                    episodes++;
                    Assert.That(vec.Row(vec.FinalObservations, i).ToArray(), Is.EqualTo(refObs[i]), $"t {t} env {i}: final observation");
                    refs[i].Reset(null, refObs[i]);
                }
                Assert.That(vec.Row(vec.Observations, i).ToArray(), Is.EqualTo(refObs[i]), $"t {t} env {i}");
            }
        }
        Assert.That(vec.Episodes, Has.Count.EqualTo(episodes));
        Assert.That(episodes, Is.GreaterThanOrEqualTo(4));
        Assert.That(vec.Episodes.All(e => e.Length <= 7 && e.Return == e.Length), Is.True);
        Assert.That(vec.TotalSteps, Is.EqualTo(40));
    }

    [Test]
    public void Mismatched_environments_and_action_counts_are_refused()
    {
        Assert.Throws<ArgumentException>(() => new VectorEnvironment([new CartPole(), new StatelessCartPole()]));
        var vec = new VectorEnvironment([new CartPole()]);
        Assert.Throws<InvalidOperationException>(() => vec.Step([0]));
        vec.Reset(1);
        Assert.That(Assert.Throws<ArgumentException>(() => vec.Step([0, 1]))!.Message, Does.Contain("2 actions for 1"));
    }

    [Test]
    public void Observation_history_is_right_aligned_masks_the_time_before_the_episode_and_wraps()
    {
        var h = new ObservationHistory(2, 3, 2);
        var w = new float[6]; var m = new float[3];
        h.StartEpisode(0, [1, 2]);
        h.CopyWindow(0, w, m);
        Assert.That(w, Is.EqualTo(new float[] { 0, 0, 0, 0, 1, 2 })); Assert.That(m, Is.EqualTo(new float[] { 1, 1, 0 }));
        h.Push(0, [3, 4]); h.Push(0, [5, 6]); h.Push(0, [7, 8]);
        h.CopyWindow(0, w, m);
        Assert.That(w, Is.EqualTo(new float[] { 3, 4, 5, 6, 7, 8 })); Assert.That(m, Is.EqualTo(new float[] { 0, 0, 0 }));
        h.StartEpisode(0, [9, 9]);
        h.CopyWindow(0, w, m);
        Assert.That(w, Is.EqualTo(new float[] { 0, 0, 0, 0, 9, 9 })); Assert.That(m, Is.EqualTo(new float[] { 1, 1, 0 }));
        h.CopyWindow(1, w, m);
        Assert.That(m, Is.EqualTo(new float[] { 1, 1, 1 }), "an environment with no observation yet is all padding");
    }
}
