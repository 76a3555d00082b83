/**
 * One notebook's cell states: read from each cell's metadata when the notebook opens,
 * updated by the kernel over the `nbcache` comm as cells run, marked stale from the
 * kernel's plan when a cell is edited or ran.
 */

import { Cell, ICellModel, ICodeCellModel } from '@jupyterlab/cells';
import { NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { cssString, IRecord, Progress, shown, State, stateOf } from './states';

export const TARGET = 'nbcache';
/** Quiet time after the last edit before the kernel is asked for a plan. */
export const DEBOUNCE_MS = 400;
/** The states a plan can make stale: what a cell restored or ran and kept. */
const KEPT: (State | null)[] = ['restored', 'ran', 'memory'];

interface IStateMessage {
  type: 'state';
  cell_id: string;
  cell_state: State | null;
  record?: IRecord;
  progress?: Progress;
}

interface IPlanRow {
  cell_id: string | null;
  decided: string;
  why: string;
}

interface IPlanMessage {
  type: 'plan';
  seq: number;
  rows: IPlanRow[];
}

export class CellStates {
  constructor(panel: NotebookPanel) {
    this.panel = panel;
    this.button = runStaleButton(() => void this.runStale());
    panel.toolbar.insertItem(10, 'nbcache-run-stale', this.button);
    this.refreshButton();
    void panel.context.ready.then(() => {
      const cells = panel.content.model?.cells;
      cells?.changed.connect(() => this.watchAll(), this);
      this.watchAll();
    });
    panel.sessionContext.kernelChanged.connect((_, change) => {
      this.useKernel(change.newValue);
    }, this);
    this.useKernel(panel.sessionContext.session?.kernel ?? null);
    panel.disposed.connect(() => this.dispose());
  }

  /** Whether the kernel's nbcache is listening (for tests and the command). */
  get connected(): boolean {
    return this.comm !== null && !this.comm.isDisposed;
  }

  get staleCount(): number {
    return this.stale.size;
  }

  /** Run every stale cell, top to bottom, each once. */
  async runStale(): Promise<void> {
    const notebook = this.panel.content;
    const ids = notebook.widgets.map(c => c.model.id).filter(id => this.stale.has(id));
    for (const id of ids) {
      const index = notebook.widgets.findIndex(c => c.model.id === id);
      if (index < 0) {
        continue;
      }
      notebook.deselectAll();
      notebook.activeCellIndex = index;
      const ok = await NotebookActions.run(notebook, this.panel.sessionContext);
      if (!ok) {
        break; // a cell raised: what follows it would run on what it left
      }
    }
  }

  dispose(): void {
    window.clearTimeout(this.timer);
    this.comm = null;
  }

  // -- the kernel ------------------------------------------------------------------

  private useKernel(kernel: Kernel.IKernelConnection | null): void {
    this.comm = null;
    this.running.clear();
    this.stale.clear();
    this.renderAll();
    if (!kernel) {
      return;
    }
    // The kernel sends nothing until told that someone listens: say hello.
    kernel.registerCommTarget(TARGET, comm => {
      this.attach(comm);
      comm.send({ type: 'hello' });
    });
    kernel.statusChanged.connect((_, status) => {
      if (status === 'restarting' || status === 'autorestarting') {
        this.comm = null;
        this.running.clear();
        this.stale.clear();
        this.renderAll();
      }
    }, this);
    // A kernel that loaded nbcache before this page opened has the comm it opened
    // then: open one of our own. One that has not will open one when it does.
    void kernel
      .requestCommInfo({ target_name: TARGET })
      .then(reply => {
        const content = reply.content;
        if (content.status !== 'ok' || Object.keys(content.comms).length === 0) {
          return;
        }
        if (this.panel.sessionContext.session?.kernel !== kernel || this.connected) {
          return;
        }
        const comm = kernel.createComm(TARGET);
        this.attach(comm);
        comm.open({ type: 'hello' });
      })
      .catch(() => undefined);
  }

  private attach(comm: Kernel.IComm): void {
    this.comm = comm;
    comm.onMsg = msg => this.received(msg);
    comm.onClose = () => {
      if (this.comm === comm) {
        this.comm = null;
      }
    };
  }

  private received(msg: KernelMessage.ICommMsgMsg): void {
    const data = msg.content.data as unknown as IStateMessage | IPlanMessage;
    if (data.type === 'state') {
      this.stateMessage(data);
    } else if (data.type === 'plan') {
      this.planMessage(data);
    }
  }

  private stateMessage(data: IStateMessage): void {
    const cell = this.cellById(data.cell_id);
    if (!cell) {
      return;
    }
    const id = data.cell_id;
    this.stale.delete(id);
    this.edited.delete(id);
    if (data.cell_state === 'running') {
      this.running.set(id, data.progress ?? [0, null]);
      this.render(cell);
      this.refreshButton();
      return;
    }
    this.running.delete(id);
    const before = cell.model.getMetadata('nbcache');
    if (data.cell_state && data.record) {
      if (JSON.stringify(before) !== JSON.stringify(data.record)) {
        cell.model.setMetadata('nbcache', data.record); // told again: no change to save
      }
    } else if (before !== undefined) {
      cell.model.deleteMetadata('nbcache');
    }
    this.render(cell);
    this.refreshButton();
    if (data.cell_state !== 'restored') {
      // what it bound may differ from before: the cells after it may run again now
      this.planFrom(this.indexOf(id) + 1, 'ran');
    }
  }

  private planMessage(data: IPlanMessage): void {
    if (data.seq !== this.seq) {
      return; // an older question's answer: another is on its way
    }
    for (const row of data.rows) {
      if (!row.cell_id) {
        continue;
      }
      const cell = this.cellById(row.cell_id);
      const kept = cell ? stateOf(cell.model.getMetadata('nbcache')) : null;
      // A cell edited since it ran is stale unless it would restore; a cell after it,
      // if it restored or ran and kept what it made and would now run again.
      const edited =
        this.edited.has(row.cell_id) &&
        cell?.model.type === 'code' &&
        (cell.model as ICodeCellModel).executionCount !== null &&
        !row.decided.startsWith('restore');
      if (cell && (edited || (row.decided === 'run' && KEPT.includes(kept)))) {
        this.stale.set(row.cell_id, row.why);
      } else {
        this.stale.delete(row.cell_id);
      }
      if (cell) {
        this.render(cell);
      }
    }
    this.refreshButton();
  }

  /**
   * Ask the kernel for the plan from cell `index` on, once edits and runs pause: from
   * the first cell edited, and from after the last cell that ran. (Not the first that
   * ran: after Run All, the namespace holds what the last cells bound, which the first
   * cells did not read when they ran.)
   */
  private planFrom(index: number, why: 'edited' | 'ran'): void {
    if (!this.connected) {
      return;
    }
    if (why === 'edited') {
      this.editedFrom = Math.min(this.editedFrom ?? index, index);
    } else {
      this.ranFrom = index;
    }
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => this.sendPlan(), DEBOUNCE_MS);
  }

  private sendPlan(): void {
    const from = Math.min(this.editedFrom ?? Infinity, this.ranFrom ?? Infinity);
    this.editedFrom = this.ranFrom = null;
    if (!this.comm || this.comm.isDisposed) {
      return;
    }
    // A cell nbcache kept, or one edited since it ran; a plain cell as it is ran already
    // in this kernel: what it bound is what the namespace holds.
    const cells: [string, string, number][] = [];
    this.panel.content.widgets.forEach((cell, index) => {
      const model = cell.model;
      const planned =
        this.edited.has(model.id) || stateOf(model.getMetadata('nbcache')) !== null;
      if (index >= from && model.type === 'code' && planned) {
        cells.push([cell.model.id, cell.model.sharedModel.getSource(), index + 1]);
      }
    });
    if (cells.length === 0) {
      return;
    }
    this.seq += 1;
    this.comm.send({ type: 'plan', seq: this.seq, cells });
  }

  // -- the cells -------------------------------------------------------------------

  private watchAll(): void {
    for (const cell of this.panel.content.widgets) {
      const model = cell.model;
      if (!this.watched.has(model)) {
        this.watched.add(model);
        model.metadataChanged.connect(() => this.renderModel(model), this);
        model.sharedModel.changed.connect((_, change) => {
          if (change.sourceChange && this.connected) {
            this.edited.add(model.id);
            this.planFrom(this.indexOf(model.id), 'edited');
          }
        }, this);
        void cell.ready.then(() => this.render(cell));
      }
    }
    this.renderAll();
  }

  private renderAll(): void {
    for (const cell of this.panel.content.widgets) {
      this.render(cell);
    }
    this.refreshButton();
  }

  private renderModel(model: ICellModel): void {
    const cell = this.cellById(model.id);
    if (cell) {
      this.render(cell);
    }
  }

  private render(cell: Cell): void {
    if (cell.model.type !== 'code') {
      return;
    }
    const id = cell.model.id;
    const record = cell.model.getMetadata('nbcache') as IRecord | undefined;
    const what = shown(
      record ?? null,
      this.running.get(id) ?? null,
      this.stale.has(id) ? (this.stale.get(id) ?? '') : null
    );
    const node = cell.node;
    const prompt = node.querySelector('.jp-InputPrompt') as HTMLElement | null;
    if (!what) {
      delete node.dataset.nbcacheState;
      node.style.removeProperty('--nbcache-label');
      if (prompt?.dataset.nbcacheHover !== undefined) {
        prompt.removeAttribute('title');
        delete prompt.dataset.nbcacheHover;
      }
      return;
    }
    node.dataset.nbcacheState = what.state;
    node.style.setProperty('--nbcache-label', cssString(what.label));
    if (prompt) {
      prompt.title = what.hover;
      prompt.dataset.nbcacheHover = '';
    }
  }

  private refreshButton(): void {
    const count = this.stale.size;
    const button = this.button.node.querySelector('button');
    if (button) {
      button.textContent = `Run ${count} stale`;
      button.title = `Run the ${count} stale cell${count === 1 ? '' : 's'}, top to bottom`;
    }
    this.button.setHidden(count === 0);
  }

  private cellById(id: string): Cell | undefined {
    return this.panel.content.widgets.find(c => c.model.id === id);
  }

  private indexOf(id: string): number {
    return this.panel.content.widgets.findIndex(c => c.model.id === id);
  }

  private readonly panel: NotebookPanel;
  private readonly button: Widget;
  private readonly watched = new WeakSet<ICellModel>();
  private readonly running = new Map<string, Progress>();
  private readonly stale = new Map<string, string>();
  private readonly edited = new Set<string>(); // cells whose source changed since they ran
  private comm: Kernel.IComm | null = null;
  private seq = 0;
  private timer = 0;
  private editedFrom: number | null = null;
  private ranFrom: number | null = null;
}

/** The toolbar's "Run N stale" button, hidden while no cell is stale. */
function runStaleButton(onClick: () => void): Widget {
  const node = document.createElement('div');
  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'nbcache-run-stale jp-mod-styled';
  button.addEventListener('click', onClick);
  node.appendChild(button);
  const widget = new Widget({ node });
  widget.addClass('nbcache-run-stale-item');
  return widget;
}
