// Exact arithmetic on the engine's decimal strings (sums of PnL), on scaled integers rather than
// binary floats, so "0.1" + "0.2" is "0.3".

import { plainDecimal } from "./format";

const PLAIN = /^(-?)(\d+)(?:\.(\d+))?$/;

function parse(value: string): { units: bigint; scale: number } | null {
  const match = PLAIN.exec(plainDecimal(value));
  if (!match) return null;
  const [, sign, whole = "0", fraction = ""] = match;
  const units = BigInt(whole + fraction) * (sign === "-" ? -1n : 1n);
  return { units, scale: fraction.length };
}

function render(units: bigint, scale: number): string {
  const negative = units < 0n;
  const digits = (negative ? -units : units).toString().padStart(scale + 1, "0");
  const whole = digits.slice(0, digits.length - scale);
  const fraction = digits.slice(digits.length - scale);
  return `${negative ? "-" : ""}${whole}${scale ? "." + fraction : ""}`;
}

/** a + b, exactly, keeping the larger number of decimals. `null` when either is not a decimal. */
export function addDecimals(a: string, b: string): string | null {
  const x = parse(a);
  const y = parse(b);
  if (!x || !y) return null;
  const scale = Math.max(x.scale, y.scale);
  const sum = x.units * 10n ** BigInt(scale - x.scale) + y.units * 10n ** BigInt(scale - y.scale);
  return render(sum, scale);
}

/** The exact sum of the values present (null ones skipped); "0" for none. */
export function sumDecimals(values: ReadonlyArray<string | null | undefined>): string | null {
  let total: string | null = "0";
  for (const value of values) {
    if (value === null || value === undefined || value === "") continue;
    total = total === null ? null : addDecimals(total, value);
  }
  return total;
}
