// The TensorBoard "attention" tab: TensorBoard loads this module in the plugin's iframe
// (base href plugin/attention/) and calls render().
import { mount, serverSource } from "./explorer.js";

export async function render() {
  const style = document.createElement("link");
  style.rel = "stylesheet";
  style.href = "./explorer.css";
  document.head.append(style);
  const root = document.createElement("div");
  document.body.append(root);
  await mount(root, serverSource("."));
}
