// The Pools view (being built).
import { heading } from "./dom.js";

export const routes = [{ pattern: /^#\/pools(\?.*)?$/, title: "Pools", render }];

async function render(ctx) {
  ctx.main.append(heading("Pools"));
}
