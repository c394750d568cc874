import assert from "node:assert/strict";
import { ByteBudget } from "../../src/util/byte_budget.ts";

Deno.test("ByteBudget admits in order and lets one oversized request through alone", async () => {
  const budget = new ByteBudget(10);
  const a = await budget.acquire(6);
  const order: string[] = [];
  const b = budget.acquire(6).then((r) => (order.push("b"), r));
  const c = budget.acquire(50).then((r) => (order.push("c"), r));
  await new Promise((resolve) => setTimeout(resolve, 10));
  assert.deepEqual(order, []);
  a();
  (await b)();
  (await c)();
  assert.deepEqual(order, ["b", "c"]);
  assert.equal(budget.held, 0);
});
