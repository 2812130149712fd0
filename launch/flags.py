"""The launcher's command-line flags (absl), in the groups `python launch/apex.py --help` lists
them in (GROUPS); launch/run/setup.py checks them into a `Setup`."""

import textwrap

from absl import flags

from launch.distributed.program import LAUNCH_TYPES

FLAGS = flags.FLAGS

# ---- Launch: how and where the run executes
flags.DEFINE_enum("lp_launch_type", "local_mp", [*LAUNCH_TYPES, "anakin"],
                  "local_mt: threads in this process; local_mp: one process per node on a local "
                  "Ray instance; ray: join the Ray cluster at --ray_address; anakin: acting, "
                  "replay and updates in one compiled program on this host's devices.")
flags.DEFINE_string("ray_address", None, "HOST:PORT of a running Ray cluster (--lp_launch_type=ray).")
flags.DEFINE_integer("num_actors", 2, "Actor nodes (processes under local_mp); anakin has none "
                     "(each device steps the agent config's anakin_num_envs envs).")
flags.DEFINE_integer("envs_per_actor", 8, "Environments each actor steps as one batch.")
flags.DEFINE_integer("num_seeds", 1, "--lp_launch_type=anakin: independent agents trained at "
                     "once (seeds --seed, --seed+1, ...), each selected on validation; "
                     "summary.json holds each one's results and their medians.")
flags.DEFINE_string("sweep", "", "--lp_launch_type=anakin: settings trained together as the "
                    "members of one compiled program, each times --num_seeds, the member with the "
                    "best validation Sharpe tested alone (docs/sweep.md). A grid: "
                    "'learning_rate=1e-4,3e-4;risk_aversion=12,24' (every combination: 4 settings); "
                    "'|' joins grids into a list: 'learning_rate=1e-4;discount=0.9|learning_rate=3e-4'. "
                    "Settings: risk_aversion and the agent's per-member ones (apex_dqn: learning_rate, "
                    "discount, target_update_period, priority_exponent, epsilon_base, "
                    "epsilon_exponent; impala: learning_rate); one that changes array shapes is refused.")
flags.DEFINE_integer("pbt_every", 0, "--sweep: population-based training every this many "
                     "validation evaluations (0: off): the lowest --pbt_fraction of the members "
                     "copy the state of members among the highest and perturb its settings "
                     "(docs/sweep.md).")
flags.DEFINE_float("pbt_fraction", 0.25, "--pbt_every: the fraction of the members replaced in "
                   "each round (at least one), in (0, 0.5].")
flags.DEFINE_integer("seed", 0, "Seed of the market, the learner and the actors.")
flags.DEFINE_string("workdir", None, "Output folder (default: a new folder under ./runs/).")
flags.DEFINE_bool("restore", False, "Continue from the workdir's last learner and replay checkpoints.")
flags.DEFINE_string("compilation_cache", None, "JAX's persistent compilation cache "
                    "(launch/run/compilation.py): 'off', or a folder; default on jax >= 0.5: "
                    "$APEX_COMPILATION_CACHE, else ~/.cache/apex-trader/jax-compilation; off on "
                    "requirements.txt's jax 0.4.34, whose cached executables can crash (BUILD.md).")

# ---- Agent: which agent and its settings
flags.DEFINE_string("agent", "apex_dqn", "Agent builder, by its name in agents/registry.py.")
flags.DEFINE_string("agent_preset", "small", "Named settings of the agent's config (agents' "
                    "config.py PRESETS): 'small' learns on a 2-core machine in minutes; "
                    "'apex_paper' is Ape-X's paper settings, for a GPU learner and many actors.")
flags.DEFINE_string("agent_config", "", "Overrides of the agent's config (on top of the preset): "
                    "key=value,key=value.")

# ---- Market data: where the markets come from and how they are split
flags.DEFINE_string("data", "synthetic", "Market: 'synthetic' (= synthetic:ou), synthetic:gbm, "
                    "synthetic:regime (a process: distinct train/validation/test paths), the "
                    "path of an OHLCV CSV file, a folder of CSV files or a quoted glob pattern "
                    "such as 'bars/*.csv' (one market per file; each split chronologically).")
flags.DEFINE_string("date_format", None, "strptime format of the CSV's timestamps (default: guessed).")
flags.DEFINE_string("data_cache", None, "CSV data cache (environments/data/data_cache.py): 'off', or "
                    "a folder every node can write or read; default: $APEX_DATA_CACHE, else "
                    "beside the CSV when writable, else ~/.cache/apex-trader.")
flags.DEFINE_integer("synthetic_steps", 4096, "Bars of each synthetic path.")
flags.DEFINE_integer("synthetic_paths", 32, "Training paths of a synthetic market (distinct seeds).")
flags.DEFINE_integer("synthetic_instruments", 10, "Instruments of --data=synthetic:panel, a "
                     "portfolio's synthetic panel of --synthetic_steps bars (docs/portfolios.md).")
flags.DEFINE_integer("validation_paths", 4, "Held-out synthetic paths for model selection.")
flags.DEFINE_integer("test_paths", 8, "Held-out synthetic paths for the final test.")
flags.DEFINE_float("train_fraction", 0.6, "CSV: the first fraction of the bars for training.")
flags.DEFINE_float("validation_fraction", 0.2, "CSV: the next fraction for model selection; the "
                   "rest is the test split.")
flags.DEFINE_float("periods_per_year", 0.0, "Bars per year for Sharpe and annualized return; "
                   "0: inferred from the bars' spacing and calendar.")

# ---- Walk-forward folds: train, select and test on one fold of K
flags.DEFINE_integer("folds", 0, "Walk-forward folds K of each CSV file (or of one synthetic "
                     "path of --synthetic_steps bars): 0 keeps the one split by the fractions "
                     "above; K >= 1 trains, selects and tests on fold --fold "
                     "(environments/data/folds.py).")
flags.DEFINE_integer("fold", 0, "With --folds=K: the fold to run, 0 (the earliest) .. K-1.")
flags.DEFINE_integer("fold_test_bars", 0, "With --folds: bars of each fold's test part; 0: "
                     "(bars - 2 x embargo) // (K + 4).")
flags.DEFINE_integer("fold_validation_bars", 0, "With --folds: bars of each validation part; "
                     "0: as many as a test part.")
flags.DEFINE_integer("fold_train_bars", 0, "With --folds: 0 trains on every bar before the "
                     "validation part (expanding window); N > 0 on the N bars before it (rolling).")
flags.DEFINE_integer("embargo", -1, "With --folds: bars left out between the training, "
                     "validation and test parts, at least the agent's target horizon (n_step, "
                     "or an IMPALA sequence_length - 1); -1: that horizon.")

# ---- Environment: the trading env every part and launch type is built from
flags.DEFINE_integer("window", 2, "Bars in one observation.")
flags.DEFINE_integer("episode_length", 256, "Steps of a training episode.")
flags.DEFINE_list("positions", ["-1", "0", "1"], "Target positions the actions choose from "
                  "(fractions of portfolio value).")
flags.DEFINE_float("commission_bps", 1.0, "Commission per unit of traded notional, in bps.")
flags.DEFINE_float("spread_bps", 1.0, "Half-spread paid per unit of traded notional, in bps.")
flags.DEFINE_float("borrow_bps_per_step", 0.4, "Cost of holding a short position, bps per step.")
flags.DEFINE_float("risk_aversion", None, "Kappa of the training reward's variance penalty: each "
                   "step's reward is its log growth minus kappa / 2 x its squared return "
                   "(environments/envs/accounting.py); the portfolio and every metric are unchanged. "
                   "0: the log growth alone. Default: the agent's own, chosen on validation of the "
                   "default market, whose bars move ~1% (apex_dqn 24, impala 0: docs/running.md"
                   "#the-reward). It is multiplied by 1% / the training split's per-step "
                   "volatility, as the agent's reward_scale is.")

# ---- Limits and checkpoints: the first limit reached stops the run
flags.DEFINE_integer("max_learner_steps", 0, "Stop when the learner reaches this step "
                     "(restored steps count); 0: no limit.")
flags.DEFINE_integer("max_env_steps", 0, "Stop after this many env steps of all actors (anakin: "
                     "of each seed's envs); 0: no limit.")
flags.DEFINE_float("max_seconds", 240.0, "Stop after this many seconds of running nodes (anakin: "
                   "of training, after compiling); 0: no limit.")
flags.DEFINE_integer("checkpoint_every", 1000, "Learner checkpoint every this many steps "
                     "(and at the end); 0: only at the end.")

# ---- Evaluation: model selection on validation, one test at the end
flags.DEFINE_integer("eval_every", 500, "Evaluate on the validation split every this many learner "
                     "steps (and once at the end); the best parameters are tested once at the end.")
flags.DEFINE_bool("report_test_curve", False, "Also log test metrics at every evaluation, for "
                  "plots only (selection never reads them).")
flags.DEFINE_float("flat_margin", 1.0, "Flat (no position, no cost) is a candidate of the "
                   "selection: the agent's best of K validation evaluations is tested only if its "
                   "Sharpe beats flat's (0) by what luck alone gives the best of K (E[max of K "
                   "standard normals] standard errors) plus this many standard errors more, a "
                   "standard error being 1 / sqrt(years of the median validation market); else the "
                   "run selects and tests flat (docs/running.md#model-selection).")
flags.DEFINE_bool("flat_candidate", True, "Whether flat is a candidate of the selection "
                  "(--flat_margin); --noflat_candidate always tests the agent's best parameters.")

# (title, what the group is for, its flags), in --help's order.
GROUPS = (
    ('Launch', 'how and where the run executes',
     ('lp_launch_type', 'ray_address', 'num_actors', 'envs_per_actor', 'num_seeds', 'sweep', 'pbt_every',
      'pbt_fraction', 'seed', 'workdir', 'restore', 'compilation_cache')),
    ('Agent', 'which agent and its settings',
     ('agent', 'agent_preset', 'agent_config')),
    ('Market data', 'where the markets come from and how they are split',
     ('data', 'date_format', 'data_cache', 'synthetic_steps', 'synthetic_paths', 'synthetic_instruments',
      'validation_paths', 'test_paths', 'train_fraction', 'validation_fraction',
      'periods_per_year')),
    ('Walk-forward folds', 'train, select and test on one fold of K',
     ('folds', 'fold', 'fold_test_bars', 'fold_validation_bars', 'fold_train_bars', 'embargo')),
    ('Environment', 'the trading env every part and launch type is built from',
     ('window', 'episode_length', 'positions', 'commission_bps', 'spread_bps',
      'borrow_bps_per_step', 'risk_aversion')),
    ('Limits and checkpoints', 'the first limit reached stops the run',
     ('max_learner_steps', 'max_env_steps', 'max_seconds', 'checkpoint_every')),
    ('Evaluation', 'model selection on validation, one test at the end',
     ('eval_every', 'flat_candidate', 'flat_margin', 'report_test_curve')),
)


def help_text(program: str = "launch/apex.py") -> str:
    """Every flag of the project by group: its name, default and help (absl's --helpfull also
    lists absl's and JAX's own flags)."""
    lines = [f"usage: python {program} [--flag=value ...]", "",
             "Trains an agent on a trading market; every flag below is optional. A bad value fails at",
             "once, naming the flag. --helpfull also lists absl's and JAX's own flags.", ""]
    for title, what, names in GROUPS:
        lines.append(f"{title} ({what}):")
        for name in names:
            flag = FLAGS[name]
            default = (flag.default_as_str or "").strip("'")
            choices = getattr(flag.parser, "enum_values", None)
            text = flag.help
            if choices:  # absl starts an enum's help with "<a|b|c>: "
                text = text.removeprefix(f"<{'|'.join(choices)}>: ")
            suffix = f"  (one of: {', '.join(choices)})" if choices else ""
            lines.append(f"  --{name}={default}{suffix}")
            lines.extend(textwrap.wrap(text, 88, initial_indent="      ", subsequent_indent="      "))
        lines.append("")
    return "\n".join(lines)
