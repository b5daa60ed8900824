// The Workers view (being built).
import { heading } from "./dom.js";

export const routes = [{ pattern: /^#\/workers(\?.*)?$/, title: "Workers", render }];

async function render(ctx) {
  ctx.main.append(heading("Workers"));
}
