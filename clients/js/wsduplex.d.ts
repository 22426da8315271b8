// TypeScript declarations of wsduplex.js (docs/js-client.md). Every exported name here is
// exported by the module and the other way round: tests/interop/node/js_client_types.mjs
// checks it.

/** A transport, in the order tried: WebSocket, Server-Sent Events, long polling. */
export type Transport = 'websocket' | 'sse' | 'longpoll';

/** idle: nothing to follow yet; connecting: first connection; open: a welcome came;
 * reconnecting: lost, retrying; closed: `disconnect`, `close`, a refusal or a 401. */
export type State = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

export const TRANSPORTS: readonly Transport[];

/** Exponential backoff with full jitter: uniform in [0, min(cap, start * 2^attempt)) ms. */
export function backoff(attempt: number, start?: number, cap?: number): number;

/** Any JSON value but null. */
export type Json = string | number | boolean | Json[] | { [key: string]: Json };

/** A message of a room, as the server sent it: `text` or `data`, never both. */
export interface Message {
  type: 'message';
  id: number;
  room: string;
  name: string;
  ts: number;
  text?: string;
  data?: Json;
  /** Delivered by one node alone while Redis was unreachable. */
  local?: true;
}

export interface Welcome {
  type: 'welcome';
  room: string;
  name: string;
  members: string[];
  last_id: number;
  /** Some messages after `since` had already left the room's history. */
  gap: boolean;
  history: Message[];
}

export interface ErrorEvent {
  type: 'error';
  error: string;
  message: string;
  room?: string;
}

export interface Presence {
  type: 'welcome' | 'joined' | 'left';
  name: string;
  /** The room's members after the change. */
  members: string[];
}

export interface HubOptions {
  /** The name asked for in every room (the server may add a suffix; an identity's wins). */
  name?: string;
  /** An access token (`--auth-token`, a JWT). */
  token?: string;
  /** A WebSocket class: `ws`'s in Node; the global one by default. */
  WebSocket?: unknown;
  /** fetch, for long polling and for sending over SSE; the global one by default. */
  fetch?: typeof globalThis.fetch;
  /** An EventSource class; the global one by default (browsers). */
  EventSource?: unknown;
  /** The transports allowed, in order of preference (default: all that are available). */
  transports?: Transport[];
  /** First backoff, in ms (250). */
  backoffStart?: number;
  /** Largest backoff, in ms (5000). */
  backoffCap?: number;
  /** A WebSocket not open after this many ms counts as blocked (8000). */
  openTimeout?: number;
  /** A long-poll request older than this many ms counts as lost (40000). */
  pollTimeout?: number;
  /** Close on `pagehide` and resume on `pageshow` (browsers; default true). */
  lifecycle?: boolean;
}

interface SubscriptionEvents {
  welcome: (welcome: Welcome) => void;
  message: (message: Message) => void;
  data: (data: Json, message: Message) => void;
  presence: (presence: Presence) => void;
  /** The room's ids started again (a restarted server without Redis): it is read again
   * from its start, and messages already delivered may come again with new ids. */
  reset: () => void;
  error: (error: ErrorEvent) => void;
  /** The server refused the room (400 or 403 on the first room's path; `forbidden`,
   * `bad_room`, `too_many_subscriptions` or `too_many_rooms` for a subscribe): the
   * subscription is over. */
  refused: (reason: string) => void;
}

export class Subscription {
  private constructor();
  readonly hub: Hub;
  readonly room: string;
  /** The name the server gave us in this room; null before the first welcome. */
  readonly name: string | null;
  readonly members: string[];
  /** The highest id delivered: where a reconnect resumes (`since`). */
  readonly lastId: number;
  /** False once unsubscribed, refused or closed. */
  readonly active: boolean;
  on<E extends keyof SubscriptionEvents>(type: E, listener: SubscriptionEvents[E]): this;
  off<E extends keyof SubscriptionEvents>(type: E, listener: SubscriptionEvents[E]): this;
  publish(value: Json): void;
  unsubscribe(): void;
}

interface HubEvents {
  state: (change: { state: State; transport: Transport }) => void;
  /** Something went wrong and what is done about it, for people. */
  warning: (text: string) => void;
  /** An error event naming no room. */
  error: (error: ErrorEvent) => void;
  /** The server wants a (new) token: the hub is closed until `refresh(token)`. */
  unauthorized: (reason: string) => void;
  /** The server took a `refresh`: the token's expiry (seconds since the epoch), or null. */
  refreshed: (expires: number | null) => void;
}

export class Hub {
  /** `url`: where the hub's paths start (`https://host/`, `wss://host/hub/`); in a page,
   * where this module was loaded from by default. */
  constructor(url?: string | URL, options?: HubOptions);
  readonly url: string;
  readonly name: string | null;
  readonly token: string | null;
  readonly state: State;
  /** The transport in use, or tried next. */
  readonly transport: Transport;
  readonly transports: Transport[];
  readonly subscriptions: ReadonlyMap<string, Subscription>;
  on<E extends keyof HubEvents>(type: E, listener: HubEvents[E]): this;
  off<E extends keyof HubEvents>(type: E, listener: HubEvents[E]): this;
  subscribe(room: string, options?: { since?: number }): Subscription;
  /** A string goes as chat text, any other JSON value as `data`. */
  publish(room: string, value: Json): void;
  refresh(token: string): void;
  connect(): void;
  disconnect(): void;
  close(): void;
}
