// The GitHub Action's post step (action.yml `runs.post`, `post-if: always()`): runs stop.sh, which
// writes the job summary and stops the server gracefully so owed uploads reach the bucket. After
// an explicit `stop` step it finds the server stopped already and says so. Never fails the job.
import { runScript, warn } from "./run.mjs";

try {
  const problem = await runScript("stop");
  if (problem) warn(`Cannot stop the go-cache-plugin server cleanly: ${problem}`);
} catch (error) {
  warn(`Cannot stop the go-cache-plugin server cleanly: ${error?.message ?? error}`);
}
process.exitCode = 0;
