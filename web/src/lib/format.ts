// Display helpers. Decimal strings are formatted as text (grouping, fixed places, sign) without
// ever passing through a JavaScript number, so no digit the engine sent is changed.

const DECIMAL = /^([+-]?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/;

/** Normalise `0E-8`, `1.5e3` and the like to plain notation. */
export function plainDecimal(value: string): string {
  const match = DECIMAL.exec(value.trim());
  if (!match) return value;
  const [, sign = "", intPart = "0", frac = "", exp] = match;
  let digits = intPart + frac;
  let point = intPart.length + (exp ? Number.parseInt(exp, 10) : 0);
  if (point <= 0) {
    digits = "0".repeat(1 - point) + digits;
    point = 1;
  }
  if (point > digits.length) digits = digits + "0".repeat(point - digits.length);
  let whole = digits.slice(0, point).replace(/^0+(?=\d)/, "");
  const fraction = digits.slice(point);
  if (whole === "") whole = "0";
  const isZero = /^0*$/.test(whole + fraction);
  return `${isZero ? "" : sign === "-" ? "-" : ""}${whole}${fraction ? "." + fraction : ""}`;
}

function group(whole: string): string {
  return whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/**
 * Round half away from zero to `places` decimals and group thousands: ("1234.5678", 2) → "1,234.57".
 * Works on the digits, never on a float.
 */
export function formatDecimal(value: string | null | undefined, places = 2, signed = false): string {
  if (value === null || value === undefined || value === "") return "—";
  const plain = plainDecimal(value);
  const match = /^(-?)(\d+)(?:\.(\d*))?$/.exec(plain);
  if (!match) return value;
  const negative = match[1] === "-";
  let whole = match[2] ?? "0";
  let fraction = (match[3] ?? "").padEnd(places + 1, "0");
  const roundUp = Number.parseInt(fraction[places] ?? "0", 10) >= 5;
  fraction = fraction.slice(0, places);
  if (roundUp) {
    const digits = (whole + fraction).split("").map(Number);
    let i = digits.length - 1;
    while (i >= 0) {
      const d = (digits[i] ?? 0) + 1;
      if (d < 10) {
        digits[i] = d;
        break;
      }
      digits[i] = 0;
      i -= 1;
    }
    const joined = (i < 0 ? "1" : "") + digits.join("");
    whole = joined.slice(0, joined.length - places) || "0";
    fraction = joined.slice(joined.length - places);
  }
  const isZero = /^0*$/.test(whole + fraction);
  const sign = isZero ? "" : negative ? "-" : signed ? "+" : "";
  return `${sign}${group(whole.replace(/^0+(?=\d)/, ""))}${places > 0 ? "." + fraction : ""}`;
}

/** The sign of a decimal string: -1, 0 or 1. */
export function decimalSign(value: string | null | undefined): -1 | 0 | 1 {
  if (!value) return 0;
  const plain = plainDecimal(value);
  if (/^-?0*(\.0*)?$/.test(plain)) return 0;
  return plain.startsWith("-") ? -1 : 1;
}

/** A price or quantity: trailing zeros trimmed, at least `min` places. */
export function formatAmount(value: string | null | undefined, min = 0): string {
  if (value === null || value === undefined || value === "") return "—";
  const plain = plainDecimal(value);
  const [whole = "0", fraction = ""] = plain.split(".");
  let trimmed = fraction.replace(/0+$/, "");
  if (trimmed.length < min) trimmed = trimmed.padEnd(min, "0");
  const negative = whole.startsWith("-");
  const digits = negative ? whole.slice(1) : whole;
  return `${negative ? "-" : ""}${group(digits)}${trimmed ? "." + trimmed : ""}`;
}

const TIME = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export function formatTime(iso: string | null | undefined): string {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : TIME.format(date);
}

export function titleCase(value: string): string {
  return value.replace(/_/g, " ").replace(/^\w/, (c) => c.toUpperCase());
}
