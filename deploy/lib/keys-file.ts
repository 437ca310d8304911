/**
 * The guard on `initialKeysFile`: its text is copied into the CloudFormation template (the seed
 * custom resource's parameters), which anyone allowed to read the stack can read, so it may hold
 * hashed keys only (`value_sha256`), never a key in clear text (`value`).
 *
 * Input: the file's name and text. Output: nothing, or one `Error` listing every problem with its
 * `file:line:col`.
 * Invariant: the file is parsed as YAML, every document of it, and every mapping key is looked at
 * wherever it sits and in whatever style it is written (block, flow `{id: a, value: "…"}`, quoted,
 * explicit `? value`, inside an anchor that an alias reuses). A line pattern cannot see all of
 * those; the parser can. A file that does not parse is refused too: what cannot be read cannot be
 * shown to hold no key.
 */
import { LineCounter, isScalar, parseAllDocuments, visit } from 'yaml';

/** Throws unless `text` is one YAML document without a `value:` mapping key anywhere. */
export function checkHashedOnly(file: string, text: string): void {
  const lineCounter = new LineCounter();
  const docs = parseAllDocuments(text, { lineCounter });
  const at = (offset: number) => {
    const { line, col } = lineCounter.linePos(offset);
    return `${file}:${line}:${col}`;
  };
  const problems: string[] = [];
  // An empty stream is an empty array, typed apart from a list of documents.
  const all = [...docs];
  if (all.length === 0 || all[0].contents === null) {
    // Nothing but comments: not a key set (the gateway refuses it too).
    problems.push(`${file}: holds no YAML document (expected usage_plans: and keys:)`);
  }
  if (all.length > 1) {
    problems.push(`${at(all[1].range[0])}: a second YAML document; a keys file is one document`);
  }
  for (const doc of all) {
    for (const e of doc.errors) {
      problems.push(`${at(e.pos[0])}: not valid YAML: ${e.message.split('\n')[0]}`);
    }
    visit(doc, {
      Pair(_, pair) {
        if (isScalar(pair.key) && pair.key.value === 'value') {
          problems.push(
            `${at(pair.key.range?.[0] ?? 0)}: plain \`value:\` (an API key in clear text); `
            + 'use value_sha256 entries, as `sagegate keys new` prints them');
        }
      },
    });
  }
  if (problems.length > 0) {
    throw new Error(
      `initialKeysFile: refused, because its text goes into the CloudFormation template:\n  ${problems.join('\n  ')}`);
  }
}
