// A strict XML parse into a small tree, for tests that check XML the project writes: saxes
// enforces well-formedness (XML 1.0 characters, escaping, nesting) and throws on any error.
import { SaxesParser } from "saxes";

export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  /** The element's own text (not its children's), entities decoded */
  text: string;
}

export function parseXml(xml: string): XmlElement {
  const parser = new SaxesParser({ xmlns: false });
  const stack: XmlElement[] = [];
  let root: XmlElement | undefined;
  parser.on("error", (err) => {
    throw err;
  });
  parser.on("opentag", (tag) => {
    const e: XmlElement = { name: tag.name, attrs: { ...(tag.attributes as Record<string, string>) }, children: [], text: "" };
    if (stack.length) stack[stack.length - 1].children.push(e);
    else root = e;
    stack.push(e);
  });
  parser.on("text", (t) => {
    if (stack.length) stack[stack.length - 1].text += t;
  });
  parser.on("closetag", () => void stack.pop());
  parser.write(xml).close();
  if (!root) throw new Error("no root element");
  return root;
}
