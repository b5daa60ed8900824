// The Machine policies view (being built).
import { heading } from "./dom.js";

export const routes = [{ pattern: /^#\/policies(\?.*)?$/, title: "Machine policies", render }];

async function render(ctx) {
  ctx.main.append(heading("Machine policies"));
}
