// Exact decimal-string addition.

import { describe, expect, it } from "vitest";
import { addDecimals, sumDecimals } from "./decimal";

describe("addDecimals", () => {
  it("adds without floating-point error", () => {
    expect(addDecimals("0.1", "0.2")).toBe("0.3");
    expect(addDecimals("65065.00000000", "0.39039000")).toBe("65065.39039000");
  });
  it("handles signs, borrowing and exponents", () => {
    expect(addDecimals("-1.5", "0.25")).toBe("-1.25");
    expect(addDecimals("1.5", "-2")).toBe("-0.5");
    expect(addDecimals("-0.1", "0.1")).toBe("0.0");
    expect(addDecimals("0E-8", "12.3")).toBe("12.30000000");
    expect(addDecimals("1e3", "1")).toBe("1001");
    expect(addDecimals("99999999999999999999.99", "0.01")).toBe("100000000000000000000.00");
  });
  it("refuses what is not a decimal", () => {
    expect(addDecimals("abc", "1")).toBeNull();
  });
});

describe("sumDecimals", () => {
  it("sums, skipping nulls", () => {
    expect(sumDecimals(["1.10", null, "-0.05", "2"])).toBe("3.05");
    expect(sumDecimals([])).toBe("0");
  });
});
