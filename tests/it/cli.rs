//! Where the config comes from: `--config`, else env `KEEPUP_CONFIG`, else `./cfg.toml`.

use crate::testenv::{Run, TestEnv};

fn keepup(env: &TestEnv, cwd: &str, config_env: Option<&str>, args: &[&str]) -> Run {
    let mut command = env.command(std::path::Path::new(env!("CARGO_BIN_EXE_keepup")));
    command.current_dir(env.path(cwd)).args(args);
    if let Some(path) = config_env {
        command.env("KEEPUP_CONFIG", path);
    }
    Run::from_output(&command.output().unwrap())
}

#[test]
fn config_from_flag_env_or_current_folder() {
    require!("python3", "python3");
    let env = TestEnv::new();
    env.python_service("svc.py", "");
    env.config("entry = \"svc.py\"\n");
    env.write("elsewhere/other.toml", "entry = \"../svc.py\"\n");
    // ./cfg.toml by default.
    keepup(&env, ".", None, &["status"])
        .expect(3)
        .stdout_has("svc.py: stopped");
    // KEEPUP_CONFIG, relative paths resolved against the config's folder, not the cwd.
    let other = env.path("elsewhere/other.toml");
    let run = keepup(
        &env,
        "elsewhere",
        Some(other.to_str().unwrap()),
        &["status"],
    );
    run.expect(3).stdout_has("other.toml");
    // --config wins over the environment.
    let run = keepup(
        &env,
        "elsewhere",
        Some("/nonexistent.toml"),
        &["--config", "../cfg.toml", "status"],
    );
    run.expect(3).stdout_has("cfg.toml");
    // No config anywhere: a config error, naming where it looked.
    keepup(&env, "elsewhere", None, &["status"])
        .expect(78)
        .stderr_has("elsewhere/cfg.toml");
}

#[test]
fn version_and_help() {
    let env = TestEnv::new();
    keepup(&env, ".", None, &["-V"])
        .expect(0)
        .stdout_has(env!("CARGO_PKG_VERSION"));
    let help = keepup(&env, ".", None, &["--help"]);
    help.expect(0).stdout_has("restart").stdout_has("--config");
}
