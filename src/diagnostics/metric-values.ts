/**
 * Metrics whose values are computed when /metrics is scraped: a registered metric is a function
 * that returns its samples, and prom-client formats them and adds up --workers processes with the
 * metric's `aggregator`. Nothing is counted through prom-client's own classes on the DNS path.
 */

import type { Aggregator, Metric, Registry } from 'prom-client';

/** One sample: a value with its labels (`metricName` for a histogram's _bucket, _sum, _count). */
export interface Value {
  value: number;
  labels: Record<string, string | number>;
  metricName?: string;
}

export type MetricType = 'counter' | 'gauge' | 'histogram';

/** Registers a metric whose samples `values` computes at each scrape. */
export type MetricDeclarer = (name: string, help: string, type: MetricType, aggregator: Aggregator, values: () => Value[] | Promise<Value[]>) => void;

export function declarer(registry: Registry): MetricDeclarer {
  return (name, help, type, aggregator, values) => {
    const get = async () => ({ name, help, type, aggregator, values: await values() });
    registry.registerMetric({ name, help, type, aggregator, get, reset: () => undefined } as unknown as Metric);
  };
}
