// What the Node scripts that check the JavaScript client share (js_client_edges.mjs,
// js_client_retry.mjs): a failure is one line `SCRIPT: FAILED: why` on stderr and exit 1,
// which the Rust test that runs the script reports; every wait has a bound.

/**
 * The checks of the script `script` (its file name, the prefix of its failure line), and its
 * hard timeout, already running: `clearTimeout(hardTimeout)` once done.
 */
export function checks(script, { stepMs = 10000, hardMs = 60_000 } = {}) {
  function fail(why) {
    console.error(`${script}: FAILED: ${why}`);
    process.exit(1);
  }
  function expect(cond, what) {
    if (!cond) fail(what);
  }
  /** The next `type` event of `emitter` (its arguments), within `stepMs`. */
  function next(emitter, type, what) {
    return new Promise((resolve) => {
      const timer = setTimeout(() => fail(`no ${what} within ${stepMs} ms`), stepMs);
      const fn = (...args) => {
        clearTimeout(timer);
        emitter.off(type, fn);
        resolve(args);
      };
      emitter.on(type, fn);
    });
  }
  const hardTimeout = setTimeout(() => fail(`not done within ${hardMs / 1000} s`), hardMs);
  return { fail, expect, next, hardTimeout };
}
