// Applying live events to lists loaded over REST: upsert by id (newest first), merge partial
// updates, drop what no longer belongs.

export interface HasId {
  id: string;
}

/** Replace the item with the same id (merged, so partial updates keep the other fields) or put it first. */
export function upsertById<T extends HasId>(items: readonly T[], item: Partial<T> & HasId, limit?: number): T[] {
  const index = items.findIndex((existing) => existing.id === item.id);
  if (index >= 0) {
    const next = [...items];
    next[index] = { ...items[index], ...item } as T;
    return next;
  }
  const next = [item as T, ...items];
  return limit === undefined ? next : next.slice(0, limit);
}

/** Merge into an existing item only; an update for something not shown is ignored. */
export function mergeById<T extends HasId>(items: readonly T[], patch: Partial<T> & HasId): T[] {
  if (!items.some((existing) => existing.id === patch.id)) return items as T[];
  return items.map((existing) => (existing.id === patch.id ? { ...existing, ...patch } : existing));
}

export function removeById<T extends HasId>(items: readonly T[], id: string): T[] {
  return items.filter((existing) => existing.id !== id);
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The event's `data` when it carries an id (anything else is not an item to apply). */
export function itemOf<T extends HasId>(data: unknown): (Partial<T> & HasId) | null {
  return isRecord(data) && typeof data.id === "string" ? (data as Partial<T> & HasId) : null;
}
