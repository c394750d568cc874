import assert from "node:assert/strict";
import { commandOf, GoCommands, UNKNOWN_COMMAND } from "../../src/server/_go_command.ts";

Deno.test("commandOf() names the go subcommand of a command line, else plain go", () => {
  assert.equal(commandOf(["go", "build", "./..."]), "go build");
  assert.equal(commandOf(["/usr/local/go/bin/go", "test", "-run", "X", "./..."]), "go test");
  assert.equal(commandOf(["go", "-C", "/src", "vet", "./..."]), "go vet");
  assert.equal(commandOf(["C:\\Go\\bin\\go.exe", "list", "-m"]), "go list");
  assert.equal(commandOf(["bash", "-c", "go build"]), UNKNOWN_COMMAND);
  assert.equal(commandOf(["go"]), UNKNOWN_COMMAND);
  assert.equal(commandOf(undefined), UNKNOWN_COMMAND);
});

Deno.test({
  name: "GoCommands.identify() finds the go command behind a connect client in the process table",
  ignore: Deno.build.os === "windows",
  async fn() {
    // A stand-in client: a process whose arguments read "… /x/main.ts connect 59301", started
    // by a parent whose arguments read "go -c vet …" (argv[0] "go"), as go starts GOCACHEPROG.
    // The first word of the parent's script is "vet" (a missing command, harmless).
    // ("conn""ect": the parent's own arguments must not read like a client's.)
    const script = `vet 2>/dev/null; bash -c 'sleep 8; :' /x/main.ts conn""ect 59301 & ` +
      `trap 'kill $!; exit 0' TERM; wait`;
    const parent = new Deno.Command("bash", {
      args: ["-c", `exec -a go bash -c "$1"`, "-", script],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    try {
      const commands = new GoCommands("127.0.0.1:59301");
      let seen = UNKNOWN_COMMAND;
      for (let i = 0; i < 50 && seen === UNKNOWN_COMMAND; i++) {
        await new Promise((r) => setTimeout(r, 100));
        seen = await commands.identify(i);
        if (seen === UNKNOWN_COMMAND) commands.release(i);
      }
      assert.equal(seen, "go vet");
      assert.equal(await commands.identify(100), UNKNOWN_COMMAND, "a client is claimed once");
    } finally {
      parent.kill("SIGTERM"); // it ends its child, then itself
      await parent.status;
    }
  },
});
