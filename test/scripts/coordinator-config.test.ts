import { describe, expect, it } from 'vitest';
import { COORDINATOR_DEFAULTS, parseCoordinatorFile, resolveCoordinatorConfig } from '../../scripts/commands/coordinator-config.ts';
import { TRAINING_DEFAULTS } from '../../shared/model/training-defaults.ts';

describe('coordinator config', () => {
  it('refuses a wrong type, an unknown key, an out-of-range value and bad JSON, naming the key', () => {
    expect(() => parseCoordinatorFile('{"lr": "0.01"}', 'c.json')).toThrow(/c\.json: "lr": Invalid input: expected number, received string/);
    expect(() => parseCoordinatorFile('{"lr": 0.01, "rounds": 5, "learningRate": 1}', 'c.json')).toThrow(/unknown key "learningRate" \(known keys: identity, allow/);
    expect(() => parseCoordinatorFile('{"hidden": [64, -1]}', 'c.json')).toThrow(/"hidden\.1": Too small/);
    expect(() => parseCoordinatorFile('{"strategy": "fedsgd"}', 'c.json')).toThrow(/"strategy"/);
    expect(() => parseCoordinatorFile('{"rounds": 5,', 'c.json')).toThrow(/not valid JSON/);
    expect(() => parseCoordinatorFile('[1]', 'c.json')).toThrow(/c\.json/);
  });

  it('takes iterate averaging with a tail fraction in (0, 1] and refuses others, naming the key', () => {
    expect(parseCoordinatorFile('{"iterateAveraging": {"tailFraction": 0.5}}', 'c.json')).toEqual({ iterateAveraging: { tailFraction: 0.5 } });
    expect(parseCoordinatorFile('{"iterateAveraging": {}}', 'c.json')).toEqual({ iterateAveraging: {} });
    expect(() => parseCoordinatorFile('{"iterateAveraging": {"tailFraction": 0}}', 'c.json')).toThrow(/"iterateAveraging\.tailFraction": Too small/);
    expect(() => parseCoordinatorFile('{"iterateAveraging": {"tailFraction": 1.5}}', 'c.json')).toThrow(/"iterateAveraging\.tailFraction": Too big/);
    expect(() => parseCoordinatorFile('{"iterateAveraging": {"fraction": 0.5}}', 'c.json')).toThrow(/unknown key "fraction"/);
  });

  it('layers defaults < file < flags, with strategy parameters as keys and flags', () => {
    const file = parseCoordinatorFile(JSON.stringify({ identity: 'id.key', allow: 'a.allow', classNames: ['no', 'yes'], rounds: 4, strategy: 'fedavgm', serverMomentum: 0.5 }), 'c.json');
    const config = resolveCoordinatorConfig(file, { rounds: 7, hidden: '16,8' }, { serverLearningRate: 0.9 });
    expect(config).toMatchObject({ rounds: 7, hidden: [16, 8], classes: 2, strategy: 'fedavgm', strategyParams: { serverMomentum: 0.5, serverLearningRate: 0.9 } });
    // Each default is read from one place.
    expect(config.lr).toBe(TRAINING_DEFAULTS.learningRate);
    expect(config.port).toBe(COORDINATOR_DEFAULTS.port);
    expect(() => resolveCoordinatorConfig({}, { allow: 'a', classes: 2 }, {})).toThrow(/needs --identity/);
    expect(() => resolveCoordinatorConfig(file, { classes: 3 }, {})).toThrow(/classes is 3 but classNames lists 2/);
  });
});
