// The GitHub Action's main step (action.yml `runs.main`): runs setup.sh, which downloads and
// verifies the release executable, starts `serve` and exports GOCACHEPROG (GOPROXY, GOSUMDB) to
// the job's later steps. Never fails the job: whatever goes wrong, one warning and exit 0, with
// the `enabled` output false.
import { runScript, setOutput, warn } from "./run.mjs";

try {
  const problem = await runScript("setup");
  if (problem) {
    warn(`Go build cache off: ${problem}. Go commands run without go-cache-plugin.`);
    setOutput("enabled", "false");
  }
} catch (error) {
  warn(`Go build cache off: ${error?.message ?? error}. Go commands run without go-cache-plugin.`);
}
process.exitCode = 0;
